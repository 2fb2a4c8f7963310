// UTF-8 validation of text that reaches JSON records (nlohmann::json refuses invalid UTF-8 when
// it dumps) or messages: TSV task lines, --set values.
#pragma once

#include <cstddef>
#include <string_view>

namespace sy {

// The byte offset of the first invalid UTF-8 sequence in `s`, or npos (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF).
size_t invalid_utf8(std::string_view s);

}  // namespace sy
