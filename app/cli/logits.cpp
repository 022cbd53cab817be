// moelab-cli logits --model FILE --tokens ID,ID,... --out PATH [--threads N]
// Evaluates the tokens as one batch and writes raw little-endian float32 [n_tokens, n_vocab]:
// row p = the logits after token p (the layout of ../shared/fixtures/*.logits.f32).
#include <CLI/CLI.hpp>
#include <bit>
#include <ostream>

#include "backend_option.h"
#include "checks.h"
#include "cli.h"
#include "moelab/core/error.h"
#include "moelab/core/files.h"
#include "moelab/model/model.h"

namespace moelab::cli {

namespace {
struct LogitsOptions {
  std::string model;
  std::string tokens;
  std::string out;
  int threads = 1;
  std::string backend = "auto";
};

int logits(const LogitsOptions& o, Io io) {
  static_assert(std::endian::native == std::endian::little, "writes little-endian floats");
  ContextParams cp;
  auto model = load_for_backend(o.model, o.backend, &cp.backend);
  const auto ids = parse_token_ids(o.tokens, "--tokens", model->card().n_vocab);
  preflight_context(model->card(), ids.size(), 4, true, backend_name(cp.backend), "--tokens", io);
  cp.n_ctx = static_cast<uint32_t>(ids.size());
  cp.n_threads = o.threads;
  auto ctx = Context::create(model, cp);
  // Temporary file plus rename, target and free space checked before the evaluation
  // (moelab/core/files.h).
  OutputFile f(o.out, ids.size() * uint64_t{model->card().n_vocab} * sizeof(float));
  ctx->eval(ids, /*all_logits=*/true);
  for (size_t i = 0; i < ids.size(); ++i) {
    auto l = ctx->logits(static_cast<int>(i));
    f.write(l.data(), l.size_bytes());
  }
  f.commit();
  io.err << "wrote " << ids.size() << " x " << model->card().n_vocab << " logits to " << o.out
         << '\n';
  return kOk;
}
}  // namespace

void add_logits(CLI::App& app, Io io, Action& action) {
  auto opts = std::make_shared<LogitsOptions>();
  auto* sub = app.add_subcommand(
      "logits", "Evaluate token ids as one batch; write float32 [n_tokens, n_vocab] logits");
  sub->add_option("-m,--model", opts->model, "GGUF model file")->required();
  sub->add_option("--tokens", opts->tokens, "comma-separated token ids, e.g. 1,403,407")
      ->required();
  sub->add_option("--out", opts->out, "output file (raw little-endian float32)")->required();
  sub->add_option("--threads", opts->threads, "worker threads")
      ->transform(int_range(1, kMaxThreads));
  add_backend_option(sub, opts->backend);
  sub->callback([opts, io, &action] { action = [opts, io] { return logits(*opts, io); }; });
}

}  // namespace moelab::cli
