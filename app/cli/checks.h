// Checks shared by every moelab-cli command, so each kind of bad input is handled in one place:
//   - numeric options: one validator per type (strict decimal, a readable range in the message,
//     no silent wrap-around or clamping);
//   - token and run ids: one parser, ids must be unique where a duplicate would fake a result;
//   - the memory preflight before a KV cache is allocated;
//   - text inputs: bounded reads of regular files (moelab/core/files.h), UTF-8 where the command
//     evaluates text;
//   - terminal output of strings that come from files (metadata, stored text): control bytes and
//     invalid UTF-8 escaped.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <limits>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "cli.h"
#include "moelab/core/files.h"
#include "moelab/runtime/sampler.h"

namespace moelab {
struct ModelCard;
}

namespace moelab::cli {

/// Upper bounds of the numeric options (inclusive).
inline constexpr int64_t kMaxContext = 1 << 20;                         // --ctx, tokens (1,048,576)
inline constexpr int64_t kMaxThreads = 1024;                            // --threads
inline constexpr int64_t kMaxPredict = 1 << 20;                         // -n / --n-predict, tokens
inline constexpr int64_t kMaxTopK = 1 << 20;                            // --top-k
inline constexpr int64_t kMaxChunks = 1 << 30;                          // --chunks
inline constexpr int64_t kMaxId = std::numeric_limits<int64_t>::max();  // run ids

/// Integer in [lo, hi], written in decimal (no hex, no separators; leading zeros are decimal,
/// not octal). Attach with ->transform(): the accepted text is normalised ("0100" -> "100")
/// before CLI11 converts it, so nothing wraps or is read as octal. Message:
/// "--ctx: must be an integer from 1 to 1048576, not '0'".
CLI::Validator int_range(int64_t lo, int64_t hi);
/// The same for unsigned 64-bit values (--seed: 0 to 18446744073709551615); no '-' sign
/// (CLI11 alone reads "-1" as 18446744073709551615).
CLI::Validator uint_range(uint64_t lo, uint64_t hi);
/// A finite decimal number in [lo, hi] (no nan, inf, hex floats); attach with ->check().
CLI::Validator real_range(double lo, double hi);

/// The sampling options of run and sweep, each with its range: --temp [0, 100] (0: greedy),
/// --top-k [0, 1048576] (0: off), --top-p and --min-p [0, 1]; with `penalties` also
/// --repeat-penalty [0.01, 100], --repeat-last-n [-1, 1048576], --frequency-penalty and
/// --presence-penalty [-100, 100].
void add_sampling_options(CLI::App* sub, SamplerParams& s, bool penalties);

/// Says on io.err when --top-k is at least the vocabulary (it then keeps every token, as 0) -
/// the value is used as given, never clamped silently.
void warn_top_k(const ModelCard& card, int32_t top_k, Io io);

/// Comma-separated token ids ("1,2, 3"; brackets and blanks are separators). Each must be an
/// integer in [0, n_vocab) when n_vocab > 0, else in [0, 2^31). Throws moelab::Error
/// (BadInput) naming `option` and the bad piece; an empty list is an error.
std::vector<int32_t> parse_token_ids(std::string_view s, std::string_view option,
                                     uint32_t n_vocab = 0);

/// Throws moelab::Error (BadInput) "<option>: <what> <id> is given twice" at the first repeat.
void require_unique(const std::vector<int64_t>& ids, std::string_view option,
                    std::string_view what = "run");
void require_unique(const std::vector<uint64_t>& ids, std::string_view option,
                    std::string_view what);

/// Bytes the CPU may allocate now: MemAvailable of /proc/meminfo, lowered to the cgroup's
/// memory.max - memory.current where set. The environment variable MOELAB_MEMORY_AVAILABLE
/// (bytes) replaces the measurement (tests). 0 when unknown.
uint64_t memory_available();

/// Bytes a context of n_ctx tokens allocates that grow with n_ctx: the KV cache
/// (n_layer * n_ctx * n_head_kv * (head_dim + head_dim_v) values of kv_bytes each) plus, when
/// `all_logits`, n_ctx * n_vocab float32 logits. Saturates at UINT64_MAX instead of wrapping.
uint64_t context_bytes(const ModelCard& card, uint64_t n_ctx, uint32_t kv_bytes, bool all_logits);

/// The preflight every command runs before it creates a context. Throws moelab::Error
/// (BadInput, exit 2) when context_bytes exceeds memory_available() on the CPU backend:
/// "--ctx 100000000: the KV cache needs 15.3 GiB, 3.1 GiB of memory is available". Warns on
/// io.err when n_ctx is beyond the model's trained context length (context_length).
/// `offer_f16`: the command has --kv-f16 (the message suggests it when the cache is F32).
void preflight_context(const ModelCard& card, uint64_t n_ctx, uint32_t kv_bytes, bool all_logits,
                       std::string_view backend, std::string_view option, Io io,
                       bool offer_f16 = false);

/// Reads a text that a command evaluates (perplexity, eval, sweep --file): a bounded regular
/// file (moelab::read_text_file, 64 MiB) that must be UTF-8 text without NUL bytes; binary input
/// is refused (BadInput) naming the byte offset of the first bad byte.
std::string read_utf8_text(const std::string& path);

/// Offset of the first byte that is not UTF-8 text or is NUL (moelab/core/files.h).
using moelab::first_non_text_byte;

/// JSON text of `j` (indent as nlohmann::json::dump; -1: one line). Strings from files and the
/// store are bytes and may be invalid UTF-8: such sequences become U+FFFD instead of an
/// exception, so every --json output is valid JSON.
std::string json_text(const nlohmann::json& j, int indent = 2);

/// A model's generated text, written piece by piece as tokens arrive (run, run --remote). With
/// `escape` (stdout is a terminal, or --escape) control bytes show as Unicode control pictures
/// and invalid UTF-8 as U+FFFD (report::visible_text, as the reports write them); a UTF-8
/// sequence split across pieces is held back until it is complete. Without `escape` the bytes
/// go out as generated (a pipe or file gets the model's exact output).
class GeneratedText {
 public:
  GeneratedText(std::ostream& out, bool escape) : out_(out), escape_(escape) {}
  /// Writes `piece` (what it can of it) and flushes.
  void write(std::string_view piece);
  /// Writes what is held back (an incomplete sequence, shown as U+FFFD when escaping).
  void finish();

 private:
  std::ostream& out_;
  bool escape_;
  std::string pending_;
};

/// `s` safe for a terminal: valid UTF-8 and newlines/tabs pass; other C0 control bytes, DEL,
/// C1 controls (U+0080..U+009F) and bytes of invalid UTF-8 become "\xNN".
std::string printable(std::string_view s);

}  // namespace moelab::cli
