// One error policy for the whole tree.
//   InputError    — bad user input (config, layout, graph file, checkpoint, data). The message
//                   names the file, the key/line/node, the bad value and what is allowed.
//                   Tools catch it, print it and exit with code 2.
//   InternalError — a broken invariant inside Switchyard (SY_CHECK). The message names the node
//                   and the shapes involved.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace sy {

struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct InternalError : std::logic_error {
  using std::logic_error::logic_error;
};

// Exit code for bad input, shared by every tool.
inline constexpr int kExitBadInput = 2;

}  // namespace sy

#define SY_CHECK(cond, ...)                                                                  \
  do {                                                                                       \
    if (!(cond))                                                                             \
      throw ::sy::InternalError(fmt::format("{}:{}: check `{}` failed: {}", __FILE__, __LINE__, \
                                            #cond, fmt::format(__VA_ARGS__)));               \
  } while (0)
