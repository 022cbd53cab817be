// moelab-cli perplexity --model FILE --file TEXT [--ctx N] [--threads N] [--chunks N] [--json]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <fstream>
#include <iomanip>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>
#include <thread>

#include "cli.h"
#include "moelab/core/error.h"
#include "moelab/runtime/perplexity.h"

namespace moelab::cli {

namespace {
struct PerplexityOptions {
  std::string model;
  std::string file;
  uint32_t n_ctx = 512;
  int threads = 0;
  int chunks = 0;
  bool json = false;
};

int perplexity_cmd(const PerplexityOptions& o, Io io) {
  std::ifstream in(o.file, std::ios::binary);
  if (!in) throw Error(ErrorKind::Io, "cannot open the text file", {.file = o.file});
  std::ostringstream ss;
  ss << in.rdbuf();
  auto model = Model::load(o.model);
  PerplexityParams pp;
  pp.n_ctx = o.n_ctx;
  pp.n_threads = o.threads > 0
                     ? o.threads
                     : static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 8u));
  pp.max_chunks = o.chunks;
  if (!o.json)
    pp.progress = [&io](int done, int total, double ppl) {
      io.err << "[" << done << "/" << total << "] " << std::fixed << std::setprecision(4) << ppl
             << '\n';
      return true;
    };
  const PerplexityResult r = perplexity(model, ss.str(), pp);
  if (o.json) {
    nlohmann::json j;
    j["model"] = o.model;
    j["file"] = o.file;
    j["ppl"] = r.ppl;
    j["ppl_stderr"] = r.ppl_stderr;
    j["mean_nll"] = r.mean_nll;
    j["n_ctx"] = r.n_ctx;
    j["n_chunks"] = r.n_chunks;
    j["n_text_tokens"] = r.n_text_tokens;
    j["n_scored"] = r.n_scored;
    j["chunk_ppl"] = r.chunk_ppl;
    j["seconds"] = r.seconds;
    j["threads"] = pp.n_threads;
    j["method"] = r.method;
    io.out << j.dump(2) << '\n';
  } else {
    io.out << "method: " << r.method << '\n'
           << "text: " << r.n_text_tokens << " tokens; scored " << r.n_scored << " tokens in "
           << std::fixed << std::setprecision(2) << r.seconds << " s\n"
           << "perplexity: " << std::setprecision(4) << r.ppl << " +/- " << r.ppl_stderr << '\n';
  }
  return kOk;
}
}  // namespace

void add_perplexity(CLI::App& app, Io io, Action& action) {
  auto o = std::make_shared<PerplexityOptions>();
  auto* sub = app.add_subcommand(
      "perplexity", "Perplexity of a model over a text file (llama.cpp's chunked method)");
  sub->add_option("-m,--model", o->model, "GGUF model file")->required()->check(CLI::ExistingFile);
  sub->add_option("-f,--file", o->file, "UTF-8 text file")->required()->check(CLI::ExistingFile);
  sub->add_option("-c,--ctx", o->n_ctx, "Tokens per chunk")->capture_default_str();
  sub->add_option("-t,--threads", o->threads, "CPU threads (default: cores, at most 8)");
  sub->add_option("--chunks", o->chunks, "Evaluate at most this many chunks (0: all)");
  sub->add_flag("--json", o->json, "Print the result as one JSON object");
  sub->callback([o, io, &action] { action = [o, io] { return perplexity_cmd(*o, io); }; });
}

}  // namespace moelab::cli
