// Output directories: created only once all input is checked, and locked for the run.
//
// create_output_dir(DIR, FLAG) makes DIR (and its parents) or throws InputError naming FLAG, DIR
// and the reason: DIR (or a parent) is an existing file, or the directory cannot be created or
// written (EACCES, EROFS, ...). Tools call it after every input has been validated, so a bad-input
// exit leaves no new directory behind.
//
// OutputDirLock holds flock(LOCK_EX) on DIR/.lock for its lifetime (the fd is O_CLOEXEC, so child
// processes do not inherit it). The holder writes "pid TOOL" into the file; a second tool on the
// same DIR fails at once with an InputError that names the holder. The lock file stays after the
// run (removing it would race a new holder); it is empty of data and harmless. Once it holds the
// lock, it removes the temporaries a killed writer left in DIR (remove_dead_temporaries): with
// the lock held, no live writer of DIR can own them.
#pragma once

#include <filesystem>
#include <string_view>

namespace sy {

// Creates DIR for output; InputError "FLAG DIR: ..." if it is a file or cannot be created/written.
void create_output_dir(const std::filesystem::path& dir, std::string_view flag);

// Removes DIR/NAME.tmp.<pid>.<n> (write_file_atomic's temporaries) whose process is gone (a
// writer killed mid-write); returns how many. Call with DIR's lock held.
int remove_dead_temporaries(const std::filesystem::path& dir);

class OutputDirLock {
 public:
  OutputDirLock() = default;
  // Locks DIR (which must exist) for `tool`; InputError naming the other holder if it is taken.
  OutputDirLock(const std::filesystem::path& dir, std::string_view flag, std::string_view tool);
  OutputDirLock(OutputDirLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  OutputDirLock& operator=(OutputDirLock&& o) noexcept;
  OutputDirLock(const OutputDirLock&) = delete;
  OutputDirLock& operator=(const OutputDirLock&) = delete;
  ~OutputDirLock();

 private:
  int fd_ = -1;
};

}  // namespace sy
