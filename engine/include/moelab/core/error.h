// moelab engine error type: every failure that a user can cause (a bad file, a wrong argument,
// a missing sensor) is reported as moelab::Error, carrying what went wrong and where.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace moelab {

/// Broad category of an error; the CLI maps BadInput to exit code 2, Internal to 1.
enum class ErrorKind {
  BadInput,   // the input (file, argument, config) is malformed or unsupported
  Io,         // the operating system refused (open, mmap, read, disk full)
  Cancelled,  // a caller asked to stop
  Internal,   // a bug in moelab
};

/// Where an error happened. Every field is optional; message() prints the ones that are set.
struct ErrorWhere {
  std::string file;                // path of the file involved
  std::optional<uint64_t> offset;  // byte offset in that file
  std::string subject;             // a metadata key, tensor name, op name ...
};

/// The engine's exception. what() is a complete sentence for a researcher, e.g.
/// "model.gguf: tensor 'blk.3.ffn_down.weight' (byte 1234): ends 12.0 MiB past the end of the
/// file: the download is incomplete".
class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string detail, ErrorWhere where = {});

  ErrorKind kind() const noexcept { return kind_; }
  const std::string& detail() const noexcept { return detail_; }
  const ErrorWhere& where() const noexcept { return where_; }

 private:
  ErrorKind kind_;
  std::string detail_;
  ErrorWhere where_;
};

/// Formats a byte count for people: "512 B", "3.2 KiB", "12.0 MiB", "1.50 GiB".
std::string format_bytes(uint64_t bytes);

}  // namespace moelab
