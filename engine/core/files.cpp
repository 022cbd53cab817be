#include "moelab/core/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "moelab/core/error.h"

namespace moelab {

namespace {

Error io_error(const std::string& path, const std::string& doing, int err) {
  return Error(ErrorKind::Io, doing + ": " + os_reason(err), {.file = path});
}

std::string not_regular(unsigned mode) {
  return "is " + describe_file_type(mode) + ", not a regular file";
}

// Splits "dir/name" into the folder ("." when none) and the name.
std::pair<std::string, std::string> split_path(const std::string& p) {
  const size_t slash = p.find_last_of('/');
  if (slash == std::string::npos) return {".", p};
  return {slash == 0 ? "/" : p.substr(0, slash), p.substr(slash + 1)};
}

// Removes "<name>.part.<pid>[-n]" files in `dir` whose writer process no longer runs.
void remove_stale_parts(const std::string& dir, const std::string& name) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  const std::string prefix = name + ".part.";
  while (const dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n.size() <= prefix.size() || n.compare(0, prefix.size(), prefix) != 0) continue;
    const char* s = n.c_str() + prefix.size();
    char* end = nullptr;
    errno = 0;
    const long pid = std::strtol(s, &end, 10);
    if (errno || end == s || pid <= 0 || pid > INT_MAX || (*end && *end != '-')) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // still running
    const std::string full = dir + "/" + n;
    struct stat st {};
    if (::lstat(full.c_str(), &st) == 0 && S_ISREG(st.st_mode)) ::unlink(full.c_str());
  }
  ::closedir(d);
}

}  // namespace

std::string describe_file_type(unsigned mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a named pipe (FIFO)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISREG(mode)) return "a regular file";
  return "not a regular file";
}

std::string os_reason(int err) {
  std::string s = std::strerror(err);
  if (err == ENOSPC) s += " (the disk is full)";
#ifdef EDQUOT
  if (err == EDQUOT) s += " (the disk quota is exceeded)";
#endif
  return s;
}

int open_regular_file(const std::string& path, std::string_view what) {
  // O_NONBLOCK: opening a FIFO without a writer returns at once instead of waiting for one.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) throw io_error(path, "cannot open the " + std::string(what), errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw io_error(path, "cannot read the " + std::string(what) + "'s size", err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorKind::BadInput,
                not_regular(st.st_mode) + " (give a " + std::string(what) + ")", {.file = path});
  }
  // Regular files never block; reads from here on are ordinary blocking reads.
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl >= 0) ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  return fd;
}

std::string read_text_file(const std::string& path, std::string_view what, uint64_t max_bytes) {
  const int fd = open_regular_file(path, what);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  ::fstat(fd, &st);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > max_bytes)
    throw Error(ErrorKind::BadInput,
                "the " + std::string(what) + " is " + format_bytes(size) + ", more than the " +
                    format_bytes(max_bytes) + " moelab reads",
                {.file = path});
  std::string out;
  out.reserve(static_cast<size_t>(size));
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw io_error(path, "cannot read the " + std::string(what), errno);
    }
    if (n == 0) break;
    // A file that grows while it is read (or whose size lied, as in /proc) is still bounded.
    if (out.size() + static_cast<size_t>(n) > max_bytes)
      throw Error(ErrorKind::BadInput,
                  "the " + std::string(what) + " is more than the " + format_bytes(max_bytes) +
                      " moelab reads",
                  {.file = path});
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string check_output_target(const std::string& path) {
  if (path.empty()) throw Error(ErrorKind::BadInput, "the output path is empty");
  struct stat st {};
  std::string target = path;
  if (::lstat(path.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode)) {
      // Write through the link: replace the file it points to, keep the link.
      char* real = ::realpath(path.c_str(), nullptr);
      if (!real)
        throw Error(ErrorKind::BadInput,
                    "is a symbolic link to a missing or unreachable file (" +
                        std::string(std::strerror(errno)) + "); give the file itself",
                    {.file = path});
      target = real;
      std::free(real);
      if (::stat(target.c_str(), &st) != 0) throw io_error(path, "cannot read the link", errno);
    }
    if (!S_ISREG(st.st_mode))
      throw Error(ErrorKind::BadInput,
                  not_regular(st.st_mode) +
                      "; moelab writes only regular files and will not "
                      "replace it",
                  {.file = path});
    if (::access(target.c_str(), W_OK) != 0) throw io_error(path, "cannot write the file", errno);
  } else if (errno != ENOENT) {
    throw io_error(path, "cannot write the file", errno);
  }
  const std::string dir = split_path(target).first;
  struct stat ds {};
  if (::stat(dir.c_str(), &ds) != 0)
    throw io_error(path, "cannot write into the folder '" + dir + "'", errno);
  if (!S_ISDIR(ds.st_mode))
    throw Error(ErrorKind::BadInput, "'" + dir + "' " + not_regular(ds.st_mode) + " folder",
                {.file = path});
  return target;
}

OutputFile::OutputFile(const std::string& path, uint64_t expected_bytes) : path_(path) {
  target_ = check_output_target(path);
  struct stat st {};
  const bool exists = ::stat(target_.c_str(), &st) == 0;
  const auto [dir, name] = split_path(target_);
  remove_stale_parts(dir, name);
  if (expected_bytes > 0) {
    struct statvfs vs {};
    if (::statvfs(dir.c_str(), &vs) == 0) {
      const uint64_t avail = static_cast<uint64_t>(vs.f_bavail) * vs.f_frsize;
      if (expected_bytes > avail)
        throw Error(ErrorKind::Io,
                    "not enough free space: writing needs " + format_bytes(expected_bytes) +
                        ", the file system has " + format_bytes(avail) + " free",
                    {.file = path});
    }
  }
  const std::string base = target_ + ".part." + std::to_string(::getpid());
  int fd = -1;
  for (int i = 0; fd < 0; ++i) {
    tmp_ = i == 0 ? base : base + "-" + std::to_string(i);
    fd = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && (errno != EEXIST || i > 100))
      throw io_error(path, "cannot create a file in '" + dir + "'", errno);
  }
  if (exists) ::fchmod(fd, st.st_mode & 07777);  // replacing a file keeps its permission bits
  f_ = ::fdopen(fd, "wb");
  if (!f_) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp_.c_str());
    throw io_error(path, "cannot open the file for writing", err);
  }
  constexpr size_t kBuf = 1 << 20;
  buf_ = std::make_unique<char[]>(kBuf);
  std::setvbuf(f_, buf_.get(), _IOFBF, kBuf);
}

OutputFile::~OutputFile() {
  if (committed_) return;
  if (f_) std::fclose(f_);
  ::unlink(tmp_.c_str());
}

void OutputFile::fail(int err, const std::string& doing) {
  if (f_) std::fclose(f_);
  f_ = nullptr;
  ::unlink(tmp_.c_str());
  committed_ = true;  // nothing left to clean up
  throw io_error(path_, doing, err);
}

void OutputFile::write(const void* data, size_t n) {
  if (!n) return;
  if (!f_) throw Error(ErrorKind::Internal, "write after commit", {.file = path_});
  if (std::fwrite(data, 1, n, f_) != n) fail(errno, "cannot write the file");
  written_ += n;
}

uint64_t OutputFile::commit() {
  if (!f_) throw Error(ErrorKind::Internal, "commit twice", {.file = path_});
  if (std::fflush(f_) != 0) fail(errno, "cannot write the file");
  if (::fsync(::fileno(f_)) != 0 && errno != EINVAL && errno != EROFS)
    fail(errno, "cannot write the file");
  const int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) fail(errno, "cannot write the file");
  if (::rename(tmp_.c_str(), target_.c_str()) != 0)
    fail(errno, "cannot move the finished file into place");
  committed_ = true;
  return written_;
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  OutputFile f(path, bytes.size());
  f.write(bytes);
  f.commit();
}

size_t first_non_text_byte(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == 0) return i;
    if (c < 0x80) {
      ++i;
      continue;
    }
    int n = 0;
    uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return i;
    }
    if (i + n >= s.size()) return i;
    for (int k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (d & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
      return i;
    i += n + 1;
  }
  return std::string_view::npos;
}

std::string read_utf8_text_file(const std::string& path, std::string_view what) {
  std::string text = read_text_file(path, what);
  const size_t bad = first_non_text_byte(text);
  if (bad != std::string_view::npos) {
    char why[64];
    std::snprintf(why, sizeof why,
                  text[bad] == 0 ? "a NUL byte" : "0x%02X does not start valid UTF-8",
                  static_cast<unsigned char>(text[bad]));
    throw Error(ErrorKind::BadInput,
                std::string("is not UTF-8 text: ") + why + "; give a text file, not a binary one",
                {.file = path, .offset = bad});
  }
  return text;
}

}  // namespace moelab
