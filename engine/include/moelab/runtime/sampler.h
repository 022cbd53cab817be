// Token samplers: turn one row of logits into the next token.
//
// The chain (Sampler::sample) runs the steps in llama.cpp's default order
// (common/sampling.cpp, `common_params_sampling::samplers` at commit c392e50):
//
//   penalties -> top-k -> top-p -> min-p -> temperature -> draw
//
// so that a parameter set means the same thing here as in llama-cli. Sources of each step:
//   * repetition penalty: Keskar et al. 2019, "CTRL" (arXiv:1909.05858), in the sign-aware form
//     llama.cpp and HF transformers use (positive logits divided, negative multiplied);
//   * frequency / presence penalty: OpenAI API semantics (logit -= count * frequency
//     + (count > 0) * presence), as llama.cpp's `penalties` sampler;
//   * top-k: Fan et al. 2018 (arXiv:1805.04833);
//   * top-p (nucleus): Holtzman et al. 2019 (arXiv:1904.09751);
//   * min-p: Nguyen et al. 2024 (arXiv:2407.01082);
//   * temperature: logits / T (Ackley, Hinton, Sejnowski 1985).
// Temperature <= 0 means greedy: penalties are applied, then the arg-max is taken (ties -> the
// lowest token id); no division by the temperature ever happens, so no inf/NaN.
//
// Determinism. Candidates are always ordered by (probability desc, token id asc), so ties are
// broken by token id. The random draw uses std::mt19937_64 seeded with the seed, and turns its
// output into a uniform double in [0, 1) by hand (top 53 bits * 2^-53) instead of
// std::uniform_real_distribution, whose algorithm differs between standard libraries: the same
// seed, logits and parameters give the same token on every platform. When no seed is given, one
// is drawn from std::random_device and recorded (Sampler::seed()) so the run can be repeated.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace moelab {

/// Sampling parameters. Defaults are llama.cpp's (common_params_sampling at c392e50) except the
/// repetition window, which is the same (64).
struct SamplerParams {
  float temperature = 0.8f;       // <= 0: greedy
  int32_t top_k = 40;             // <= 0 or >= n_vocab: off
  float top_p = 0.95f;            // >= 1: off
  float min_p = 0.05f;            // <= 0: off
  float repeat_penalty = 1.0f;    // 1: off; > 1 discourages repeats
  float frequency_penalty = 0.f;  // subtracted once per occurrence in the window
  float presence_penalty = 0.f;   // subtracted once if present in the window
  int32_t penalty_last_n = 64;    // tokens of history the penalties look at (0: off, -1: all)
  std::optional<uint64_t> seed;   // empty: a random seed, recorded in Sampler::seed()

  /// Human-readable one-line summary, e.g. "temp 0.80, top-k 40, top-p 0.95, min-p 0.05".
  std::string describe() const;
};

/// One entry of a candidate list: a token id, its (possibly modified) logit and, after
/// softmax(), its probability.
struct Candidate {
  int32_t id;
  float logit;
  float p;
};

/// A candidate list as the steps below transform it. `sorted` is true when `items` is ordered
/// by logit descending, ties by id ascending, and `p` holds the softmax of the logits.
struct Candidates {
  std::vector<Candidate> items;
  bool sorted = false;

  /// All tokens of a logits row F32 [n_vocab], unsorted.
  static Candidates from_logits(std::span<const float> logits);
};

namespace sampling {

/// Sorts by (logit desc, id asc) and sets p = softmax(logit) (computed in double). No-op when
/// already sorted. Candidates with logit -inf get p = 0.
void softmax(Candidates& c);
/// Keeps the k most likely (k <= 0 or k >= size: no-op).
void top_k(Candidates& c, int32_t k);
/// Keeps the smallest prefix (in sorted order) whose probability mass reaches p, never fewer
/// than min_keep. "Reaches" allows 1e-6 of floating-point slack so that a mass equal to p in
/// exact arithmetic counts as reaching it. p >= 1: no-op. Renormalises p of the kept ones.
void top_p(Candidates& c, float p, size_t min_keep = 1);
/// Keeps tokens whose probability is >= min_p * (largest probability); at least min_keep.
/// min_p <= 0: no-op. Renormalises.
void min_p(Candidates& c, float min_p, size_t min_keep = 1);
/// Divides logits by t (t > 0) and recomputes p. t <= 0 keeps only the arg-max (greedy).
void temperature(Candidates& c, float t);
/// Draws one token from the (sorted, normalised) candidates with the uniform number u in [0, 1).
int32_t draw(Candidates& c, double u);

/// Applies repetition / frequency / presence penalties in place to logits F32 [n_vocab] for the
/// tokens in `history` (ids outside [0, n_vocab) are ignored). The repetition penalty is applied
/// once per distinct token: logit / penalty when logit > 0, logit * penalty otherwise. Then
/// logit -= count * frequency + presence. Empty history: no change.
void apply_penalties(std::span<float> logits, std::span<const int32_t> history,
                     float repeat_penalty, float frequency_penalty, float presence_penalty);

/// Index of the largest logit, ties -> lowest id. NaN logits are never chosen. Throws
/// moelab::Error (BadInput) for an empty row.
int32_t argmax(std::span<const float> logits);

/// log softmax(logits)[token], computed in double (the model's own log-probability).
float log_prob(std::span<const float> logits, int32_t token);

}  // namespace sampling

/// The sampling chain with its state (penalty history and random generator). One per sequence.
class Sampler {
 public:
  /// Throws moelab::Error (BadInput) for parameters out of range (top-p or min-p not in [0, 1],
  /// a non-positive repetition penalty, NaN values).
  explicit Sampler(const SamplerParams& params);

  /// Chooses the next token from logits F32 [n_vocab]. Does not add it to the history (call
  /// accept()). Throws moelab::Error (BadInput) for an empty row.
  int32_t sample(std::span<const float> logits);
  /// Appends a token to the penalty history (prompt tokens may be accepted too).
  void accept(int32_t token);
  /// Clears the history and restarts the random generator from seed().
  void reset();

  /// The seed actually used (the given one, or the random one drawn at construction).
  uint64_t seed() const { return seed_; }
  const SamplerParams& params() const { return params_; }
  /// True when sample() is a deterministic arg-max (temperature <= 0).
  bool greedy() const { return params_.temperature <= 0.f; }

 private:
  SamplerParams params_;
  uint64_t seed_;
  std::mt19937_64 rng_;
  std::vector<int32_t> history_;
  std::vector<float> scratch_;
};

}  // namespace moelab
