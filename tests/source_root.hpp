// The repository root, for tests that read shipped files (configs, example graphs, goldens).
// SY_SOURCE_DIR is set by tests/CMakeLists.txt, so the path does not depend on how the
// compiler (or ccache) spells __FILE__.
#pragma once

#include <filesystem>

namespace sy::test {

inline std::filesystem::path source_root() { return SY_SOURCE_DIR; }

}  // namespace sy::test
