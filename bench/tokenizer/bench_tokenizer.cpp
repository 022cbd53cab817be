// Encoding throughput of each tokenizer kind on 1 MB of text.
//
//   bench_tokenizer [--shared DIR] [--model FILE ...] [--mb N]
//
// Tokenizers: the SPM (llama 32000) and BPE (gpt-2 50257) vocab files of ../shared/fixtures, the
// 512-token SPM of stories260K, plus any --model given (e.g. the cached SmolLM2 GGUF, BPE with
// the "smollm" pre-tokenizer). The text is generated deterministically: English-like words,
// numbers, punctuation, newlines and a few CJK / emoji / accented words. Reports tokens/s and
// MB/s (best of 3), and the ratio to a baseline measured in the same run (splitting the same
// text at spaces with std::string_view::find), so numbers from different machines compare.
// Scaling rows: one 20,000- and one 80,000-character word, and 20,000 / 80,000 spaces before a
// word (the inputs a quadratic merge or pre-tokenizer loop chokes on): the time ratio for 4x the
// input, ~4 when linear, ~16 when quadratic.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "moelab/core/error.h"
#include "moelab/gguf/gguf.h"
#include "moelab/tokenizer/tokenizer.h"

using namespace moelab;

namespace {

std::string make_text(size_t bytes) {
  static const char* words[] = {"the",
                                "model",
                                "routes",
                                "each",
                                "token",
                                "to",
                                "two",
                                "experts",
                                "and",
                                "attention",
                                "heads",
                                "look",
                                "back",
                                "over",
                                "context",
                                "while",
                                "researchers",
                                "compare",
                                "logits",
                                "Once",
                                "upon",
                                "a",
                                "time",
                                "there",
                                "was",
                                "little",
                                "girl",
                                "named",
                                "Lily",
                                "she",
                                "liked",
                                "to",
                                "play",
                                "outside",
                                "in",
                                "park",
                                "with",
                                "her",
                                "friends",
                                "however",
                                "perplexity",
                                "quantization",
                                "Mixture-of-Experts",
                                "don't",
                                "it's",
                                "we'll",
                                "h\xc3\xa9llo",
                                "w\xc3\xb6rld",
                                "na\xc3\xafve",
                                "\xe4\xbd\xa0\xe5\xa5\xbd",
                                "\xe4\xb8\x96\xe7\x95\x8c",
                                "\xf0\x9f\xa6\x99",
                                "\xf0\x9f\x9a\x80"};
  static const char* punct[] = {",", ".", "!", "?", ";", ":", " (", ")", " \"", "\""};
  const size_t n_words = sizeof(words) / sizeof(words[0]);
  uint64_t s = 0x9E3779B97F4A7C15ull;
  auto next = [&] {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  };
  std::string t;
  t.reserve(bytes + 64);
  while (t.size() < bytes) {
    const uint64_t r = next();
    if (r % 97 == 0) {
      t += "\n\n";
    } else if (r % 13 == 0) {
      t += ' ' + std::to_string(next() % 100000);
    } else {
      t += ' ';
      t += words[next() % n_words];
    }
    if (r % 7 == 0) t += punct[next() % 10];
  }
  t.resize(bytes);
  // Do not end inside a UTF-8 sequence.
  while (!t.empty() && (static_cast<unsigned char>(t.back()) & 0x80)) t.pop_back();
  return t;
}

double seconds_best_of_3(const std::function<void()>& f) {
  double best = 1e30;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::string shared = MOELAB_SHARED_DIR;
  std::vector<std::string> models;
  double mb = 1.0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--shared" && i + 1 < argc)
      shared = argv[++i];
    else if (a == "--model" && i + 1 < argc)
      models.push_back(argv[++i]);
    else if (a == "--mb" && i + 1 < argc)
      mb = std::atof(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--shared DIR] [--model FILE ...] [--mb N]\n", argv[0]);
      return 2;
    }
  }
  std::vector<std::string> files;
  for (const char* rel :
       {"/fixtures/vocab/ggml-vocab-llama-spm.gguf", "/fixtures/vocab/ggml-vocab-gpt-2.gguf",
        "/fixtures/models/stories260K/stories260K.F32.gguf"})
    if (std::filesystem::exists(shared + rel)) files.push_back(shared + rel);
  for (const auto& m : models) files.push_back(m);
  if (files.empty()) {
    std::fprintf(stderr, "no tokenizer files found (shared dir %s); pass --model FILE\n",
                 shared.c_str());
    return 2;
  }

  const std::string text = make_text(static_cast<size_t>(mb * 1024 * 1024));
  size_t words = 0;
  const double base = seconds_best_of_3([&] {
    std::string_view v(text);
    size_t n = 0, pos = 0;
    while ((pos = v.find(' ', pos)) != std::string_view::npos) ++n, ++pos;
    words = n;
  });
  std::printf("text: %.2f MB, %zu spaces; baseline split at spaces: %.1f MB/s\n", text.size() / 1e6,
              words, text.size() / 1e6 / base);
  std::printf("%-40s %-5s %-10s %10s %12s %10s %14s\n", "tokenizer", "kind", "pre", "tokens",
              "tokens/s", "MB/s", "x baseline");
  for (const auto& path : files) {
    try {
      auto f = gguf::File::open(path);
      auto tok = Tokenizer::from_gguf(*f);
      size_t n_tokens = 0;
      const double sec =
          seconds_best_of_3([&] { n_tokens = tok->encode(text, false, false).size(); });
      std::printf("%-40s %-5s %-10s %10zu %12.0f %10.2f %14.4f\n",
                  std::filesystem::path(path).filename().string().c_str(),
                  tok->kind() == VocabKind::Spm ? "spm" : "bpe",
                  tok->pre().empty() ? "-" : tok->pre().c_str(), n_tokens, n_tokens / sec,
                  text.size() / 1e6 / sec, base / sec);
    } catch (const Error& e) {
      std::fprintf(stderr, "%s: %s\n", path.c_str(), e.what());
    }
  }
  std::printf("\nscaling (best of 3, ms; 4x the input: ~4x when linear, ~16x when quadratic)\n");
  std::printf("%-40s %-22s %10s %10s %8s\n", "tokenizer", "input", "20k ms", "80k ms", "ratio");
  for (const auto& path : files) {
    try {
      auto f = gguf::File::open(path);
      auto tok = Tokenizer::from_gguf(*f);
      for (const bool spaces : {false, true}) {
        auto input = [&](size_t n) {
          return spaces ? std::string(n, ' ') + "x" : std::string(n, 'x');
        };
        const std::string small = input(20000), large = input(80000);
        const double a = seconds_best_of_3([&] { (void)tok->encode(small, false, false); });
        const double b = seconds_best_of_3([&] { (void)tok->encode(large, false, false); });
        std::printf("%-40s %-22s %10.2f %10.2f %8.2f\n",
                    std::filesystem::path(path).filename().string().c_str(),
                    spaces ? "spaces before a word" : "one long word", a * 1e3, b * 1e3, b / a);
      }
    } catch (const Error& e) {
      std::fprintf(stderr, "%s: %s\n", path.c_str(), e.what());
    }
  }
  return 0;
}
