// Safe file input and output for everything that reads or writes a user-given path (the GGUF
// reader and writer, make-model, the CLI's text inputs, logits, reports).
//
// Reading: only regular files are read. A path is opened with O_NONBLOCK and checked with
// fstat before a single byte is read, so a named pipe (FIFO), a device, a socket or a folder
// given as a model or text file is refused at once (moelab::Error, BadInput) instead of blocking
// in open() or reading forever from /dev/zero. Text reads are bounded (kMaxTextFileBytes).
//
// Writing (OutputFile): the bytes go to a temporary file "<name>.part.<pid>" in the folder of
// the target, which is renamed over the target only when complete, so a failed or cancelled write
// leaves the previous file (or nothing) behind, never an empty or truncated one. Targets:
//   - a missing path or a regular file: written as above (an existing file keeps its mode; one
//     that is not writable by the user is refused, not replaced);
//   - a symbolic link: followed; the file it points to is replaced as above and the link stays.
//     A link to a missing file or to something that is not a regular file is refused;
//   - a folder, FIFO, character or block device, socket: refused (BadInput), never replaced or
//     written into.
// Temporaries of writers that were killed (their pid no longer runs) are removed the next time
// the same target is written. Before writing, the expected size is checked against the free space
// of the target's file system (statvfs). Error messages name the path and the operating system's
// reason; "disk full" is said only when errno is ENOSPC or EDQUOT.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

namespace moelab {

/// Largest text input read by read_text_file: 64 MiB.
inline constexpr uint64_t kMaxTextFileBytes = 64ull << 20;

/// "a folder", "a named pipe (FIFO)", "a character device", "a block device", "a socket",
/// "a symbolic link", "a regular file" for a stat st_mode.
std::string describe_file_type(unsigned mode);

/// The operating system's reason for errno `err` (strerror), with "(the disk is full)" appended
/// for ENOSPC and "(the disk quota is exceeded)" for EDQUOT - and no guess for anything else.
std::string os_reason(int err);

/// Opens `path` read-only without blocking and returns the descriptor (O_CLOEXEC; the caller
/// closes it). Throws moelab::Error: Io when open/fstat fail (with the OS reason), BadInput when
/// the path is not a regular file ("is a named pipe (FIFO), not a regular file"). `what` names
/// the input in messages ("model file", "text file").
int open_regular_file(const std::string& path, std::string_view what);

/// Reads the whole regular file `path` of at most `max_bytes` bytes. Throws moelab::Error:
/// BadInput for a non-regular file or one larger than `max_bytes` (naming both sizes), Io for a
/// read error (with the OS reason). `what` names the input in messages.
std::string read_text_file(const std::string& path, std::string_view what = "text file",
                           uint64_t max_bytes = kMaxTextFileBytes);

/// Offset of the first byte that is not part of valid UTF-8 text (overlong forms, surrogates,
/// values past U+10FFFF and cut-short sequences included: RFC 3629), or of a NUL byte;
/// std::string_view::npos when the text is clean.
size_t first_non_text_byte(std::string_view s);

/// read_text_file, then refuses (BadInput, naming the byte offset of the first bad byte) text that
/// is not UTF-8 or holds a NUL byte: binary input given where text is expected.
std::string read_utf8_text_file(const std::string& path, std::string_view what = "text file");

/// The checks OutputFile makes on its target, without creating anything: lets a command refuse
/// a bad output path before it does the work. Returns the file the bytes would end up in (the
/// target of a symbolic link). Throws as OutputFile.
std::string check_output_target(const std::string& path);

/// Streams bytes into `path` through a temporary file (see the file comment). Not copyable.
/// Every error is a moelab::Error naming the path: BadInput for a refused target, Io for an
/// operating-system failure (with os_reason). Destroying an OutputFile that was not committed
/// removes the temporary.
class OutputFile {
 public:
  /// Checks the target, removes stale temporaries of it, checks that `expected_bytes` fit in the
  /// free space (0: no check) and creates the temporary.
  explicit OutputFile(const std::string& path, uint64_t expected_bytes = 0);
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  /// Bytes written so far.
  uint64_t size() const { return written_; }
  /// Flushes, syncs, closes and renames the temporary over the target; returns the size.
  uint64_t commit();
  /// The file the bytes end up in (the target of a symbolic link) and the temporary's path.
  const std::string& target() const { return target_; }
  const std::string& temp_path() const { return tmp_; }

 private:
  [[noreturn]] void fail(int err, const std::string& doing);
  std::string path_, target_, tmp_;
  std::FILE* f_ = nullptr;
  std::unique_ptr<char[]> buf_;  // stdio buffer (1 MiB: make-model streams GBs)
  uint64_t written_ = 0;
  bool committed_ = false;
};

/// Writes `bytes` to `path` with an OutputFile (size-checked, temporary plus rename).
void write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace moelab
