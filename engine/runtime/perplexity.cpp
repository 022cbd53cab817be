#include "moelab/runtime/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "moelab/core/error.h"
#include "moelab/tokenizer/tokenizer.h"

namespace moelab {

namespace {
// log softmax(logits)[token] in double (the float of sampling::log_prob would round the NLL).
double log_prob_f64(std::span<const float> logits, int32_t token) {
  double mx = -INFINITY;
  for (float x : logits) mx = std::max<double>(mx, x);
  double z = 0;
  for (float x : logits) z += std::exp(static_cast<double>(x) - mx);
  return static_cast<double>(logits[static_cast<size_t>(token)]) - mx - std::log(z);
}
}  // namespace

PerplexityResult perplexity(std::shared_ptr<const Model> model, std::span<const int32_t> tokens,
                            const PerplexityParams& params) {
  const uint32_t n_ctx = params.n_ctx;
  if (n_ctx < 4)
    throw Error(ErrorKind::BadInput, "the context for perplexity must be at least 4 tokens",
                {.subject = "n_ctx"});
  if (tokens.size() < n_ctx)
    throw Error(ErrorKind::BadInput,
                "the text is " + std::to_string(tokens.size()) +
                    " tokens, fewer than one chunk of " + std::to_string(n_ctx) +
                    ": use a smaller context or a longer text",
                {.subject = "perplexity"});
  const auto t0 = std::chrono::steady_clock::now();
  const Tokenizer* tok = model->tokenizer();
  const int32_t bos = tok && tok->add_bos() ? tok->bos_id() : -1;

  PerplexityResult r;
  r.n_ctx = n_ctx;
  r.n_text_tokens = tokens.size();
  int n_chunks = static_cast<int>(tokens.size() / n_ctx);
  if (params.max_chunks > 0) n_chunks = std::min(n_chunks, params.max_chunks);
  const uint32_t first = n_ctx / 2;
  char method[320];
  std::snprintf(method, sizeof method,
                "llama.cpp perplexity method: %d non-overlapping chunks of %u tokens, %s, "
                "scoring positions %u..%u of each chunk (second half)",
                n_chunks, n_ctx, bos >= 0 ? "BOS replacing each chunk's first token" : "no BOS",
                first + 1, n_ctx - 1);
  r.method = method;

  ContextParams cp;
  cp.n_ctx = n_ctx;
  cp.n_threads = params.n_threads;
  cp.kv_type = params.kv_type;
  cp.routing = params.routing;
  cp.attention = params.attention;
  cp.policy_stats = params.policy_stats;
  auto ctx = Context::create(model, cp);

  // NLL mean and variance by Welford's algorithm (a sum of squares would cancel).
  double nll = 0, mean = 0, m2 = 0;
  std::vector<int32_t> chunk(n_ctx);
  for (int c = 0; c < n_chunks; ++c) {
    const size_t start = static_cast<size_t>(c) * n_ctx;
    std::copy(tokens.begin() + start, tokens.begin() + start + n_ctx, chunk.begin());
    if (bos >= 0) chunk[0] = bos;
    ctx->truncate(0);
    ctx->eval(chunk, /*all_logits=*/true);
    for (uint32_t j = first; j + 1 < n_ctx; ++j) {
      const int32_t next = tokens[start + j + 1];
      const auto row = ctx->logits(static_cast<int>(j));
      if (next < 0 || static_cast<size_t>(next) >= row.size())
        throw Error(ErrorKind::BadInput,
                    "token id " + std::to_string(next) + " is outside the vocabulary",
                    {.subject = "perplexity"});
      const double lp = log_prob_f64(row, next);
      nll -= lp;
      ++r.n_scored;
      const double d = -lp - mean;
      mean += d / static_cast<double>(r.n_scored);
      m2 += d * (-lp - mean);
    }
    r.n_chunks = c + 1;
    r.chunk_ppl.push_back(std::exp(nll / static_cast<double>(r.n_scored)));
    if (params.progress && !params.progress(c + 1, n_chunks, r.chunk_ppl.back()))
      throw Error(ErrorKind::Cancelled, "perplexity cancelled");
  }
  const double n = static_cast<double>(r.n_scored);
  r.mean_nll = nll / n;
  r.ppl = std::exp(r.mean_nll);
  const double var = n > 1 ? m2 / n : 0.0;  // population variance, as llama.cpp
  r.ppl_stderr = var > 0 ? r.ppl * std::sqrt(var / (n - 1)) : 0.0;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

PerplexityResult perplexity(std::shared_ptr<const Model> model, const std::string& text,
                            const PerplexityParams& params) {
  const Tokenizer* tok = model->tokenizer();
  if (!tok)
    throw Error(ErrorKind::BadInput, "the model has no tokenizer (no tokenizer.ggml.* metadata)",
                {.file = model->card().path});
  const auto tokens = tok->encode(text, /*add_special=*/true, /*parse_special=*/false);
  return perplexity(std::move(model), tokens, params);
}

}  // namespace moelab
