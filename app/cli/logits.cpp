// moelab-cli logits --model FILE --tokens ID,ID,... --out PATH [--threads N]
// Evaluates the tokens as one batch and writes raw little-endian float32 [n_tokens, n_vocab]:
// row p = the logits after token p (the layout of ../shared/fixtures/*.logits.f32).
#include <CLI/CLI.hpp>
#include <bit>
#include <fstream>
#include <ostream>
#include <sstream>

#include "backend_option.h"
#include "cli.h"
#include "moelab/core/error.h"
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

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v < 0 || v > 0x7fffffff)
      throw Error(ErrorKind::BadInput, "--tokens: '" + item + "' is not a token id");
    ids.push_back(static_cast<int32_t>(v));
  }
  if (ids.empty()) throw Error(ErrorKind::BadInput, "--tokens: no token ids given");
  return ids;
}

int logits(const LogitsOptions& o, Io io) {
  static_assert(std::endian::native == std::endian::little, "writes little-endian floats");
  const auto ids = parse_ids(o.tokens);
  ContextParams cp;
  auto model = load_for_backend(o.model, o.backend, &cp.backend);
  cp.n_ctx = static_cast<uint32_t>(ids.size());
  cp.n_threads = o.threads;
  auto ctx = Context::create(model, cp);
  ctx->eval(ids, /*all_logits=*/true);
  std::ofstream f(o.out, std::ios::binary | std::ios::trunc);
  if (!f) throw Error(ErrorKind::Io, "cannot open the output file", {.file = o.out});
  for (size_t i = 0; i < ids.size(); ++i) {
    auto l = ctx->logits(static_cast<int>(i));
    f.write(reinterpret_cast<const char*>(l.data()), static_cast<std::streamsize>(l.size_bytes()));
  }
  f.close();
  if (!f) throw Error(ErrorKind::Io, "writing the logits failed", {.file = o.out});
  io.err << "wrote " << ids.size() << " x " << model->card().n_vocab << " logits to " << o.out
         << '\n';
  return kOk;
}
}  // namespace

void add_logits(CLI::App& app, Io io, Action& action) {
  auto opts = std::make_shared<LogitsOptions>();
  auto* sub = app.add_subcommand(
      "logits", "Evaluate token ids as one batch; write float32 [n_tokens, n_vocab] logits");
  sub->add_option("--model", opts->model, "GGUF model file")->required();
  sub->add_option("--tokens", opts->tokens, "comma-separated token ids, e.g. 1,403,407")
      ->required();
  sub->add_option("--out", opts->out, "output file (raw little-endian float32)")->required();
  sub->add_option("--threads", opts->threads, "worker threads")->check(CLI::Range(1, 1024));
  add_backend_option(sub, opts->backend);
  sub->callback([opts, io, &action] { action = [opts, io] { return logits(*opts, io); }; });
}

}  // namespace moelab::cli
