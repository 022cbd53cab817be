// session::RunRecipe: the one derivation of a generation run's context, generation and stored
// parameters for `moelab-cli run` and the lab, with the defaults from the model card and the
// machine (default_n_ctx, default_threads) that `inspect` and the lab's labels show.
#include <QtTest>

#include "card_format.h"
#include "moelab/core/error.h"
#include "moelab/session/session.h"

using namespace moelab;

class TestRunRecipe : public QObject {
  Q_OBJECT
 private slots:
  void defaults_from_the_card_and_the_machine() {
    session::RunRecipe r;
    QCOMPARE(r.context_params(4096).n_ctx, 2048u);  // capped
    QCOMPARE(r.context_params(512).n_ctx, 512u);    // the trained length
    QCOMPARE(r.context_params(0).n_ctx, 2048u);     // unknown
    for (uint64_t trained : {0ull, 100ull, 2048ull, 32768ull})
      QCOMPARE(r.context_params(trained).n_ctx, default_n_ctx(trained));
    QCOMPARE(r.context_params(0).n_threads, default_threads());
    QVERIFY(default_threads() >= 1 && default_threads() <= 8);
    const ContextParams cp = r.context_params(0);
    QVERIFY(cp.kv_type == KvType::F32);
    QVERIFY(cp.backend == Backend::Auto);
    QCOMPARE(cp.routing.describe(), RoutingPolicy::parse("default").describe());
    QCOMPARE(cp.attention.describe(), AttentionPolicy::parse("full").describe());
  }

  void asked_values_win() {
    session::RunRecipe r;
    r.n_ctx = 100;
    r.threads = 3;
    r.kv_f16 = true;
    r.backend = Backend::Cpu;
    r.routing_policy = "k:1";
    r.attention_policy = "";  // empty = full
    const ContextParams cp = r.context_params(4096);
    QCOMPARE(cp.n_ctx, 100u);
    QCOMPARE(cp.n_threads, 3);
    QVERIFY(cp.kv_type == KvType::F16);
    QVERIFY(cp.backend == Backend::Cpu);
    QCOMPARE(cp.routing.describe(), std::string("k:1"));
    QCOMPARE(cp.attention.describe(), AttentionPolicy::parse("full").describe());
    r.routing_policy = "k:zero";
    try {
      r.context_params(4096);
      QFAIL("a bad routing spec was accepted");
    } catch (const Error& e) {
      QCOMPARE(e.kind(), ErrorKind::BadInput);
    }
  }

  void generation_and_stored_config() {
    session::RunRecipe r;
    r.prompt = "Once";
    r.system = "Be brief";
    r.max_tokens = 7;
    r.sampling.temperature = 0;
    r.sampling.seed = 42;
    r.stop = {"\n"};
    r.ignore_eos = true;
    r.kv_f16 = true;
    r.routing_policy = "k:1";
    const GenerateParams gp = r.generate_params();
    QCOMPARE(gp.prompt, std::string("Once"));
    QCOMPARE(gp.max_tokens, 7);
    QVERIFY(gp.sampling.seed && *gp.sampling.seed == 42);
    QCOMPARE(gp.stop, std::vector<std::string>{"\n"});
    QVERIFY(gp.ignore_eos);
    const ContextParams cp = r.context_params(512);
    session::GenerateConfig c = session::generate_config(cp, gp, "cpu", "moelab test");
    QCOMPARE(c.n_ctx, 512u);
    QCOMPARE(c.threads, default_threads());
    QCOMPARE(c.backend, std::string("cpu"));
    QCOMPARE(c.kv_type, std::string("f16"));
    QCOMPARE(c.routing_policy, std::string("k:1"));
    QCOMPARE(c.max_tokens, 7);
    QCOMPARE(c.system, std::string());  // a system message only goes with a chat
    QCOMPARE(c.build_version, std::string("moelab test"));
    r.chat = true;
    c = session::generate_config(cp, r.generate_params(), "cuda", "moelab test");
    QCOMPARE(c.system, std::string("Be brief"));
    QCOMPARE(c.backend, std::string("cuda"));
    QVERIFY(c.chat);
  }
};

QTEST_GUILESS_MAIN(TestRunRecipe)
#include "test_run_recipe.moc"
