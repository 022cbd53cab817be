// Generation session and perplexity on real fixture models (stories260K) and synthetic ones
// written by make-model: greedy output against llama.cpp's, reproduction from the recorded
// seed, every stop condition, streaming invariants, cancel from another thread, and perplexity
// against values computed independently (llama.cpp's own logits; the model's logits; a model
// whose logits are all equal).
#include <QJsonArray>
#include <QJsonObject>
#include <atomic>
#include <cmath>
#include <fstream>
#include <thread>

#include "moelab/core/error.h"
#include "moelab/model/model.h"
#include "moelab/runtime/generator.h"
#include "moelab/runtime/perplexity.h"
#include "moelab/runtime/synthetic_model.h"
#include "moelab/tokenizer/tokenizer.h"
#include "test_support.h"

using namespace moelab;

namespace {
const QString kStories = QStringLiteral("fixtures/models/stories260K/stories260K.F32");

bool valid_utf8(const std::string& s) {
  std::string rest;
  return utf8_take_complete(s, false, &rest) == s;
}

SamplerParams greedy() {
  SamplerParams s;
  s.temperature = 0;
  return s;
}
SamplerParams pure_sampling(float temp, uint64_t seed) {
  SamplerParams s;
  s.temperature = temp;
  s.top_k = 0;
  s.top_p = 1;
  s.min_p = 0;
  s.seed = seed;
  return s;
}

// Collects the streamed events of one run.
struct Stream {
  std::vector<TokenEvent> events;
  TokenCallback cb() {
    return [this](const TokenEvent& e) {
      events.push_back(e);
      return true;
    };
  }
  std::string text() const {
    std::string t;
    for (const auto& e : events) t += e.piece;
    return t;
  }
};

std::vector<float> read_f32(const QString& path) {
  const QByteArray b = moelab::test::read_all(path);
  std::vector<float> v(static_cast<size_t>(b.size()) / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}
}  // namespace

class TestGenerator : public QObject {
  Q_OBJECT
  QString dir_;
  std::shared_ptr<const Model> stories_;
  std::string synthetic_spm_;  // random mixtral-shaped model with the stories512 vocabulary

 private slots:
  void initTestCase() {
    dir_ = moelab::test::temp_dir("test_generator");
    if (moelab::test::have_shared(kStories + ".gguf")) {
      stories_ = Model::load(moelab::test::shared_path(kStories + ".gguf"));
      SyntheticModelSpec s;
      s.arch = "mixtral";
      s.expert_count = 4;
      s.vocab_from = moelab::test::shared_path(kStories + ".gguf");
      s.seed = 11;
      synthetic_spm_ = (dir_ + "/mixtral-stories512.gguf").toStdString();
      write_synthetic_model(s, synthetic_spm_);
    }
  }

  void model_load_accepts_every_make_model_arch_data() {
    QTest::addColumn<QString>("arch");
    QTest::addColumn<QString>("type");
    for (const char* a :
         {"llama", "mixtral", "qwen2moe", "olmoe", "granitemoe", "glm4moe", "gpt-oss"})
      for (const char* t : {"F32", "F16", "Q8_0", "Q4_0"})
        QTest::newRow(qPrintable(QString("%1-%2").arg(a, t))) << QString(a) << QString(t);
  }
  void model_load_accepts_every_make_model_arch() {
    QFETCH(QString, arch);
    QFETCH(QString, type);
    SyntheticModelSpec s;
    s.arch = arch.toStdString();
    s.n_head_kv = arch == "olmoe" ? 4 : 2;
    s.expert_count = arch == "llama" ? 0 : 4;
    s.type = *gguf::type_from_name(type.toStdString());
    const std::string path = (dir_ + "/" + arch + "." + type + ".gguf").toStdString();
    write_synthetic_model(s, path);
    const auto m = Model::load(path);
    QVERIFY(m->card().problems.empty());
    QCOMPARE(m->card().expert_count, s.expert_count);
    Generator g(m, {.n_ctx = 32});
    GenerateParams gp;
    gp.prompt_tokens = std::vector<int32_t>{1, 5, 9, 200};
    gp.max_tokens = 6;
    gp.sampling = greedy();
    const auto r = g.generate(gp);
    QCOMPARE(r.tokens.size(), size_t(6));
    QCOMPARE(r.stop_reason, StopReason::MaxTokens);
    for (int32_t t : r.tokens) QVERIFY(t >= 0 && t < 512);
    QVERIFY(r.text.empty());  // no tokenizer in the file
  }

  void greedy_matches_llama_cpp() {
    MOELAB_REQUIRE_SHARED(kStories + ".oracle.json");
    const auto o =
        moelab::test::read_json(moelab::test::shared_dir() + "/" + kStories + ".oracle.json")
            .object();
    std::vector<int32_t> prompt;
    for (const auto& v : o["prompt_tokens"].toArray()) prompt.push_back(v.toInt());
    const auto steps = o["greedy_steps"].toArray();
    QCOMPARE(steps.size(), 24);
    Generator g(stories_, {.n_ctx = 64});
    GenerateParams gp;
    gp.prompt_tokens = prompt;
    gp.max_tokens = 24;
    gp.sampling = greedy();
    gp.ignore_eos = true;
    Stream st;
    const auto r = g.generate(gp, st.cb());
    QCOMPARE(r.tokens.size(), size_t(24));
    // Compare up to the first near-tie (margin < 1e-3: the tolerance of F32 logits), after
    // which a continuation may legitimately differ.
    int compared = 0;
    for (int s = 0; s < 24; ++s) {
      const auto step = steps[s].toObject();
      if (step["margin_top1_top2"].toDouble() < 1e-3) break;
      QCOMPARE(r.tokens[s], step["token"].toInt());
      ++compared;
    }
    QVERIFY2(compared >= 20, qPrintable(QString("only %1 steps compared").arg(compared)));
    // The streamed text is the decoded continuation and concatenates to result.text.
    QCOMPARE(st.text(), r.text);
    QCOMPARE(QString::fromStdString(r.text), o["greedy_text"].toString());
    // Per-token fields.
    QCOMPARE(st.events.size(), size_t(24));
    for (size_t i = 0; i < st.events.size(); ++i) {
      QCOMPARE(st.events[i].index, int32_t(i));
      QCOMPARE(st.events[i].id, r.tokens[i]);
      QVERIFY(st.events[i].logprob <= 0.f && st.events[i].logprob > -30.f);
      QCOMPARE(st.events[i].logprob, r.logprobs[i]);
      QVERIFY(st.events[i].latency_us >= 0);
      QCOMPARE(st.events[i].last, i == 23);
    }
    QVERIFY(r.ttft_ms > 0 && r.tokens_per_s > 0 && r.prefill_tokens_per_s > 0);
  }

  void sampled_run_reproduces_from_recorded_seed() {
    MOELAB_REQUIRE_SHARED(kStories + ".gguf");
    GenerateParams gp;
    gp.prompt = "Once upon a time";
    gp.max_tokens = 60;
    gp.sampling.temperature = 1.0f;  // llama.cpp's chain with default top-k/top-p/min-p
    gp.sampling.repeat_penalty = 1.1f;
    Generator g(stories_, {.n_ctx = 128});
    const auto first = g.generate(gp);  // random seed
    QCOMPARE(first.tokens.size(), size_t(60));
    gp.sampling.seed = first.seed;
    const auto again = g.generate(gp);
    QCOMPARE(again.tokens, first.tokens);
    QCOMPARE(again.text, first.text);
    QCOMPARE(again.seed, first.seed);
    // A fresh load of the model and a new session give the same run.
    Generator fresh(Model::load(moelab::test::shared_path(kStories + ".gguf")), {.n_ctx = 128});
    QCOMPARE(fresh.generate(gp).tokens, first.tokens);
    // A different seed gives a different run (60 tokens at temperature 1).
    gp.sampling.seed = first.seed + 1;
    QVERIFY(g.generate(gp).tokens != first.tokens);
  }

  void stop_string_is_cut_and_held_back() {
    MOELAB_REQUIRE_SHARED(kStories + ".gguf");
    Generator g(stories_, {.n_ctx = 128});
    GenerateParams gp;
    gp.prompt = "Once upon a time";
    gp.max_tokens = 40;
    gp.sampling = greedy();
    const auto full = g.generate(gp);
    // A stop string that spans several tokens, starting in the middle of the text.
    const size_t at = full.text.find("girl");
    QVERIFY(at != std::string::npos && at > 5);
    const std::string stop = full.text.substr(at, 12);
    gp.stop = {"never appears in this text", stop};
    Stream st;
    const auto r = g.generate(gp, st.cb());
    QCOMPARE(r.stop_reason, StopReason::StopString);
    QCOMPARE(r.stop_string, stop);
    QCOMPARE(r.text, full.text.substr(0, at));
    QCOMPARE(st.text(), r.text);  // nothing of the stop string was streamed
    QVERIFY(st.events.back().last);
    QVERIFY(r.tokens.size() < full.tokens.size());
    // Held back: some event released nothing while the stop string was being completed.
    bool held = false;
    for (const auto& e : st.events) held = held || (e.piece.empty() && e.id >= 0);
    QVERIFY(held);
    // A prefix of a stop string that never completes is released in the end.
    gp.stop = {full.text.substr(at, 4) + "\x01"};
    Stream st2;
    const auto r2 = g.generate(gp, st2.cb());
    QCOMPARE(r2.stop_reason, StopReason::MaxTokens);
    QCOMPARE(r2.text, full.text);
    QCOMPARE(st2.text(), full.text);
  }

  void context_full_is_a_clean_stop() {
    MOELAB_REQUIRE_SHARED(kStories + ".gguf");
    Generator g(stories_, {.n_ctx = 16});
    GenerateParams gp;
    gp.prompt_tokens = std::vector<int32_t>{1, 403, 407, 261, 378};
    gp.max_tokens = 100;
    gp.sampling = greedy();
    gp.ignore_eos = true;
    Stream st;
    const auto r = g.generate(gp, st.cb());
    QCOMPARE(r.stop_reason, StopReason::ContextFull);
    QCOMPARE(r.tokens.size(), size_t(16 - 5 + 1));  // the last sampled token is kept
    QCOMPARE(g.context().n_past(), 16u);
    QCOMPARE(st.text(), r.text);
    // The session stays usable and gives what a fresh session gives.
    gp.max_tokens = 4;
    const auto after = g.generate(gp);
    Generator fresh(stories_, {.n_ctx = 16});
    QCOMPARE(after.tokens, fresh.generate(gp).tokens);
    QCOMPARE(after.tokens, std::vector<int32_t>(r.tokens.begin(), r.tokens.begin() + 4));
    // A prompt that does not fit is bad input, and the session is still usable.
    gp.prompt_tokens = std::vector<int32_t>(17, 300);
    QVERIFY_THROWS_EXCEPTION(Error, g.generate(gp));
    gp.prompt_tokens = std::vector<int32_t>{1, 403};
    QCOMPARE(g.generate(gp).tokens.size(), size_t(4));
  }

  void eos_stops_and_is_reported() {
    MOELAB_REQUIRE_SHARED(kStories + ".gguf");
    // A random-weight model over the 512-token vocabulary at temperature 3 emits EOS (id 2)
    // about once per 500 tokens; the seeds make it deterministic.
    Generator g(Model::load(synthetic_spm_), {.n_ctx = 2048});
    const Tokenizer* tok = g.model().tokenizer();
    QVERIFY(tok && tok->eos_id() == 2);
    GenerateParams gp;
    gp.prompt = "Once upon a time";
    gp.max_tokens = 2000;
    bool found = false;
    for (uint64_t seed = 1; seed <= 10 && !found; ++seed) {
      gp.sampling = pure_sampling(3.f, seed);
      Stream st;
      const auto r = g.generate(gp, st.cb());
      QCOMPARE(st.text(), r.text);
      for (const auto& e : st.events) QVERIFY(valid_utf8(e.piece));  // byte tokens held back
      if (r.stop_reason != StopReason::Eos) continue;
      found = true;
      QVERIFY(tok->is_eog(r.tokens.back()));
      for (size_t i = 0; i + 1 < r.tokens.size(); ++i) QVERIFY(!tok->is_eog(r.tokens[i]));
      QVERIFY(st.events.back().last);
      // ignore_eos goes past it.
      gp.ignore_eos = true;
      const auto past = g.generate(gp);
      QVERIFY(past.tokens.size() > r.tokens.size());
      QVERIFY(std::equal(r.tokens.begin(), r.tokens.end(), past.tokens.begin()));
      gp.ignore_eos = false;
    }
    QVERIFY(found);
  }

  void cancel_from_another_thread() {
    MOELAB_REQUIRE_SHARED(kStories + ".gguf");
    Generator g(Model::load(synthetic_spm_), {.n_ctx = 4096});
    GenerateParams gp;
    gp.prompt = "Once upon a time";
    gp.max_tokens = 4000;
    gp.sampling = pure_sampling(1.f, 5);
    gp.ignore_eos = true;
    std::atomic<int> seen{0};
    std::string streamed;
    std::thread canceller([&] {
      while (seen.load() < 5) std::this_thread::yield();
      g.request_cancel();
    });
    const auto r = g.generate(gp, [&](const TokenEvent& e) {
      streamed += e.piece;
      ++seen;
      return true;
    });
    canceller.join();
    QCOMPARE(r.stop_reason, StopReason::Cancelled);
    QVERIFY(r.tokens.size() >= 5 && r.tokens.size() < 4000);
    QCOMPARE(streamed, r.text);
    // Usable afterwards; a cancel while idle does nothing.
    g.request_cancel();
    gp.max_tokens = 8;
    const auto next = g.generate(gp);
    QCOMPARE(next.stop_reason, StopReason::MaxTokens);
    QCOMPARE(next.tokens.size(), size_t(8));
    // A callback returning false stops the run too.
    gp.max_tokens = 50;
    int n = 0;
    const auto stopped = g.generate(gp, [&](const TokenEvent&) { return ++n < 3; });
    QCOMPARE(stopped.stop_reason, StopReason::Cancelled);
    QCOMPARE(stopped.tokens.size(), size_t(3));
    QCOMPARE(n, 4);  // three tokens and the closing event
  }

  void bad_requests_are_bad_input() {
    MOELAB_REQUIRE_SHARED(kStories + ".gguf");
    Generator g(stories_, {.n_ctx = 32});
    GenerateParams gp;
    gp.prompt = "Hello";
    gp.max_tokens = 0;
    QVERIFY_THROWS_EXCEPTION(Error, g.generate(gp));
    gp.max_tokens = 4;
    gp.chat = true;  // stories260K has no chat template
    try {
      g.generate(gp);
      QFAIL("chat without a template must fail");
    } catch (const Error& e) {
      QCOMPARE(e.kind(), ErrorKind::BadInput);
      QVERIFY(std::string(e.what()).find("chat template") != std::string::npos);
    }
    gp.chat = false;
    gp.prompt_tokens = std::vector<int32_t>{1, 100000};  // outside the vocabulary
    QVERIFY_THROWS_EXCEPTION(Error, g.generate(gp));
    gp.prompt_tokens.reset();
    QCOMPARE(g.generate(gp).tokens.size(), size_t(4));
    // The prompt is tokenized with BOS.
    QCOMPARE(g.tokenize("Hello").front(), 1);
  }

  // ---- perplexity -------------------------------------------------------------------------
  void perplexity_matches_llama_cpp_logits() {
    MOELAB_REQUIRE_SHARED(kStories + ".logits.f32");
    // One chunk of 16 tokens of the oracle prompt: the scored positions 8..14 have llama.cpp's
    // logits in the fixture, so the expected value is llama.cpp's perplexity.
    const auto o =
        moelab::test::read_json(moelab::test::shared_dir() + "/" + kStories + ".oracle.json")
            .object();
    std::vector<int32_t> tokens;
    for (const auto& v : o["prompt_tokens"].toArray()) tokens.push_back(v.toInt());
    const auto ref = read_f32(moelab::test::shared_dir() + "/" + kStories + ".logits.f32");
    const size_t n_vocab = ref.size() / tokens.size();
    QCOMPARE(n_vocab, size_t(512));
    double nll = 0;
    for (size_t j = 8; j < 15; ++j) {
      std::span<const float> row(ref.data() + j * n_vocab, n_vocab);
      nll -= sampling::log_prob(row, tokens[j + 1]);
    }
    const double expected = std::exp(nll / 7);
    const auto r = perplexity(stories_, tokens, {.n_ctx = 16});
    QCOMPARE(r.n_chunks, 1);
    QCOMPARE(r.n_scored, uint64_t(7));
    // F32 logits agree with llama.cpp within 1e-3, so each log-probability within 2e-3 and
    // the perplexity within 0.2 % relative.
    QVERIFY2(std::abs(r.ppl / expected - 1) < 2e-3,
             qPrintable(QString("ppl %1 vs llama.cpp %2").arg(r.ppl).arg(expected)));
  }

  void perplexity_matches_independent_computation() {
    MOELAB_REQUIRE_SHARED(kStories + ".gguf");
    const std::string text =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
        "park with her friends. One day, she saw a big red ball under a tree. She ran to the "
        "ball and picked it up. Her friend Tom came and said, \"Can I play too?\" Lily smiled.";
    const auto tokens = stories_->tokenizer()->encode(text, true, false);
    QVERIFY(tokens.size() >= 3 * 20);
    const uint32_t n_ctx = 20;
    const auto r = perplexity(stories_, text, {.n_ctx = n_ctx});
    const int n_chunks = static_cast<int>(tokens.size() / n_ctx);
    QCOMPARE(r.n_chunks, n_chunks);
    QCOMPARE(r.n_text_tokens, uint64_t(tokens.size()));
    QCOMPARE(r.n_scored, uint64_t(n_chunks * (n_ctx - 1 - n_ctx / 2)));
    QVERIFY(r.method.find("second half") != std::string::npos);
    // The same, by hand: each chunk from an empty cache with BOS first, all logits, log-softmax
    // in double over the second half.
    auto ctx = Context::create(stories_, {.n_ctx = n_ctx});
    double nll = 0;
    int n = 0;
    std::vector<double> running;
    for (int c = 0; c < n_chunks; ++c) {
      std::vector<int32_t> chunk(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
      chunk[0] = 1;
      ctx->truncate(0);
      ctx->eval(chunk, true);
      for (uint32_t j = n_ctx / 2; j < n_ctx - 1; ++j) {
        const auto row = ctx->logits(static_cast<int>(j));
        double mx = -INFINITY, z = 0;
        for (float x : row) mx = std::max<double>(mx, x);
        for (float x : row) z += std::exp(x - mx);
        nll += (mx + std::log(z)) - row[static_cast<size_t>(tokens[c * n_ctx + j + 1])];
        ++n;
      }
      running.push_back(std::exp(nll / n));
    }
    QVERIFY(std::abs(r.ppl / std::exp(nll / n) - 1) < 1e-9);
    QCOMPARE(r.chunk_ppl.size(), running.size());
    for (size_t i = 0; i < running.size(); ++i)
      QVERIFY(std::abs(r.chunk_ppl[i] / running[i] - 1) < 1e-9);
    QVERIFY(r.ppl > 1 && r.ppl < 512);
    QVERIFY(r.ppl_stderr > 0);
    // Too short a text is bad input.
    QVERIFY_THROWS_EXCEPTION(Error, perplexity(stories_, std::string("Once"), {.n_ctx = 20}));
  }

  void perplexity_of_a_uniform_model_is_the_vocabulary_size() {
    // output.weight all zero -> every logit 0 -> p = 1/512 for every token -> PPL = 512.
    SyntheticModelSpec s;
    s.n_vocab = 512;
    const std::string path = (dir_ + "/uniform.gguf").toStdString();
    write_synthetic_model(s, path);
    uint64_t off = 0, nbytes = 0;
    {
      const auto f = gguf::File::open(path);
      const auto* t = f->find_tensor("output.weight");
      QVERIFY(t);
      off = t->file_offset;
      nbytes = t->nbytes;
    }
    {
      std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(static_cast<std::streamoff>(off));
      const std::vector<char> zeros(nbytes, 0);
      f.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
      QVERIFY(f.good());
    }
    const auto m = Model::load(path);
    std::vector<int32_t> tokens(100);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 37) % 512);
    const auto r = perplexity(m, tokens, {.n_ctx = 32});
    QCOMPARE(r.n_chunks, 3);
    QCOMPARE(r.n_scored, uint64_t(3 * 15));
    QVERIFY2(std::abs(r.ppl - 512.0) < 1e-6, qPrintable(QString::number(r.ppl, 'g', 12)));
    QVERIFY(r.ppl_stderr < 1e-6);
  }
};

QTEST_GUILESS_MAIN(TestGenerator)
#include "test_generator.moc"
