// moelab-cli make-model --arch {llama,mixtral,qwen2moe,olmoe,granitemoe,glm4moe,gpt-oss,deepseek2,
//                              deepseek3} --n-embd N [--mtp-layers N (glm4moe)]
// ... -o
// FILE
#include <CLI/CLI.hpp>
#include <memory>
#include <ostream>

#include "checks.h"
#include "cli.h"
#include "moelab/core/error.h"
#include "moelab/gguf/types.h"
#include "moelab/runtime/synthetic_model.h"

namespace moelab::cli {

namespace {
struct MakeModelOptions {
  SyntheticModelSpec spec;
  std::string type = "F32";
  std::string out;
  bool quiet = false;
};

int make_model(const MakeModelOptions& o, Io io) {
  SyntheticModelSpec spec = o.spec;
  const auto t = gguf::type_from_name(o.type);
  if (!t)
    throw Error(ErrorKind::BadInput, "unknown tensor type '" + o.type + "'", {.subject = "--type"});
  spec.type = *t;
  int last = -1;
  const auto info = write_synthetic_model(spec, o.out, [&](float f) {
    const int pct = static_cast<int>(f * 100);
    if (!o.quiet && pct / 10 != last / 10) {
      io.err << "\rwriting " << o.out << ": " << pct << " %" << std::flush;
      last = pct;
    }
    return true;
  });
  if (!o.quiet) io.err << '\n';
  io.out << "wrote " << o.out << ": " << info.architecture << " (" << spec.arch << "), "
         << info.n_params << " parameters, " << info.n_vocab << " tokens, "
         << format_bytes(info.file_bytes) << '\n';
  return kOk;
}
}  // namespace

void add_make_model(CLI::App& app, Io io, Action& action) {
  auto o = std::make_shared<MakeModelOptions>();
  auto* sub = app.add_subcommand(
      "make-model", "Write a synthetic random-weight GGUF model (benchmarks, demos, tests)");
  auto& s = o->spec;
  sub->add_option("--arch", s.arch, "Architecture")
      ->check(CLI::IsMember({"llama", "mixtral", "qwen2moe", "olmoe", "granitemoe", "glm4moe",
                             "gpt-oss", "deepseek2", "deepseek3"}))
      ->capture_default_str();
  // Ranges: every size that fits the engine's 32-bit shapes; the file size is checked against
  // the free space before writing (moelab/core/files.h).
  sub->add_option("--n-embd", s.n_embd, "Embedding width")
      ->transform(int_range(1, 1 << 16))
      ->capture_default_str();
  sub->add_option("--n-layer", s.n_layer, "Transformer blocks")
      ->transform(int_range(1, 1024))
      ->capture_default_str();
  sub->add_option("--n-head", s.n_head, "Attention heads")
      ->transform(int_range(1, 1024))
      ->capture_default_str();
  sub->add_option("--n-head-kv", s.n_head_kv, "Key/value heads (grouped-query attention)")
      ->transform(int_range(1, 1024))
      ->capture_default_str();
  sub->add_option("--n-ff", s.n_ff, "FFN width (per expert for MoE models)")
      ->transform(int_range(1, 1 << 20))
      ->capture_default_str();
  sub->add_option("--n-ff-shexp", s.n_ff_shexp, "qwen2moe shared-expert width (default 2 n_ff)")
      ->transform(int_range(0, 1 << 20));
  sub->add_option("--experts", s.expert_count, "Experts per MoE layer (0 = dense)")
      ->transform(int_range(0, 1024))
      ->capture_default_str();
  sub->add_option("--top-k", s.expert_used_count, "Experts used per token (default 2)")
      ->transform(int_range(0, 1024));
  sub->add_option("--mtp-layers", s.nextn_layers,
                  "glm4moe: multi-token-prediction blocks after the decoding layers (not run)")
      ->transform(int_range(0, 16))
      ->capture_default_str();
  sub->add_option("--n-vocab", s.n_vocab, "Vocabulary size without --vocab-from")
      ->transform(int_range(1, 1 << 22))
      ->capture_default_str();
  sub->add_option("--ctx", s.context_length, "context_length written to the file")
      ->transform(int_range(1, 1 << 24))
      ->capture_default_str();
  sub->add_option("--vocab-from", s.vocab_from, "Copy the tokenizer.* metadata of this GGUF")
      ->check(CLI::ExistingFile);
  sub->add_option("--type", o->type, "Weight type of the matrices: F32, F16, Q8_0, Q4_0 or MXFP4")
      ->check(CLI::IsMember({"F32", "F16", "Q8_0", "Q4_0", "MXFP4"}, CLI::ignore_case))
      ->capture_default_str();
  sub->add_option("--seed", s.seed, "Random seed of the weights")
      ->transform(uint_range(0, UINT64_MAX))
      ->capture_default_str();
  sub->add_option("-o,--out", o->out, "Output GGUF file")->required();
  sub->add_flag("-q,--quiet", o->quiet, "No progress on stderr");
  sub->callback([o, io, &action] { action = [o, io] { return make_model(*o, io); }; });
}

}  // namespace moelab::cli
