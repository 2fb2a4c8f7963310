// The machine's memory as a limit: a program whose memory the executor has planned is refused
// before anything is allocated when it needs more than the machine has available, with the
// estimate and the limit in the message (exit 2 through tool_main), instead of a bad_alloc or the
// kernel's OOM killer hours later.
//
// The limit is MemAvailable from /proc/meminfo (memory the kernel can give without swapping,
// page cache included); where that file is missing, sysconf(_SC_AVPHYS_PAGES) · page size.
#pragma once

#include <cstdint>
#include <string_view>

namespace sy {

// Bytes available to a new allocation now (see above); 0 when neither source answers.
int64_t available_memory_bytes();

// InputError "WHAT needs N (DETAIL) but this machine has M available (MemAvailable, /proc/meminfo)"
// when `bytes` exceeds available_memory_bytes(); nothing when the limit is unknown.
void check_memory_fits(int64_t bytes, std::string_view what, std::string_view detail);

}  // namespace sy
