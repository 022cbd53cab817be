// A new architecture is one file plus its registry line (README "Adding an architecture"):
// this test defines a small variant of llama here, in its own file, registers it with
// models::register_architecture (the line registry.cpp's list would have), and runs a synthetic
// GGUF of it through the same surfaces as every other architecture - the model card,
// Model::check, Model::load and a Context - without touching engine/models/.
//
// The variant, "llama_skip": a llama whose odd layers are identities (LayerSkip-style early
// layers only, arXiv:2404.16710 skips layers the same way) and whose logits are divided by 2
// (its configure sets ArchConfig::logit_scale). Independent check: its logits on a 2-layer file
// equal half the logits of plain llama on the same file cut to its first layer, bit for bit
// (the skipped layer adds nothing to the residual stream, and x0.5 is exact in F32).
// The engine's internal headers first: forward.h declares an op named emit, which Qt defines
// as a macro.
#include "models/arch.h"
#include "models/forward.h"

#include <QtTest>
#include <algorithm>
#include <cstring>

#include "moelab/core/error.h"
#include "moelab/gguf/gguf.h"
#include "moelab/gguf/writer.h"
#include "moelab/model/card.h"
#include "moelab/model/model.h"
#include "moelab/runtime/synthetic_model.h"
#include "test_support.h"

using namespace moelab;

namespace {

// ---- The variant architecture: what an arch_<name>.cpp holds. ----

models::ArchConfig skip_configure(const gguf::File& file, const ModelCard& card) {
  models::ArchConfig c;
  c.rope_type = ops::RopeType::Norm;
  c.rope = models::rope_from_card(file, card, c.rope_type);
  c.logit_scale = 2.0f;
  return c;
}

void skip_block(models::ForwardContext& f, int il, int64_t n) {
  if (il % 2 == 1) return;  // odd layers: identity
  models::standard_block(f, il, n);
}

const models::ArchDef kArchSkip = {"llama_skip", {"norm"}, &skip_configure, nullptr, &skip_block};

// ---- Files. ----

// Copies `src` (a llama file) to `path` with general.architecture `arch` (its llama.* keys
// renamed to arch.*) and only the first `n_layer` layers.
void rewrite(const std::string& src, const std::string& path, const std::string& arch,
             uint32_t n_layer) {
  auto f = gguf::File::open(src);
  gguf::Writer w;
  for (const auto& kv : f->metadata()) {
    std::string key = kv.key();
    if (key == "general.architecture") {
      w.set_string(key, arch);
      continue;
    }
    if (key.rfind("llama.", 0) == 0) key = arch + key.substr(5);
    if (key == arch + ".block_count")
      w.set_u32(key, n_layer);
    else
      w.copy_value(key, kv);
  }
  for (const auto& t : f->tensors()) {
    if (t.name.rfind("blk.", 0) == 0 && std::stoul(t.name.substr(4)) >= n_layer) continue;
    std::vector<int64_t> shape(t.ne, t.ne + t.n_dims);
    w.add_tensor(t.name, static_cast<gguf::TensorType>(t.type), shape,
                 std::span<const uint8_t>(t.data, t.nbytes));
  }
  w.write(path);
}

std::vector<float> last_logits(const std::string& path, const std::vector<int32_t>& tokens) {
  auto model = Model::load(path);
  ContextParams cp;
  cp.n_ctx = 64;
  auto ctx = Context::create(model, cp);
  ctx->eval(tokens, false);
  auto l = ctx->logits();
  return {l.begin(), l.end()};
}

}  // namespace

class TestArchVariant : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() { models::register_architecture(kArchSkip); }

  void registered_once_and_named_by_the_card() {
    QVERIFY(models::find_architecture("llama_skip"));
    const auto sup = supported_architectures();
    QVERIFY(std::find(sup.begin(), sup.end(), "llama_skip") != sup.end());
    try {
      models::register_architecture(kArchSkip);
      QFAIL("a second registration was accepted");
    } catch (const Error& e) {
      QCOMPARE(e.kind(), ErrorKind::BadInput);
      QVERIFY2(
          std::string(e.what()).find("'llama_skip' is already registered") != std::string::npos,
          e.what());
    }
  }

  void loads_and_runs_as_its_block_says() {
    const QString dir = test::temp_dir("test_arch_variant");
    const std::string base = (dir + "/llama.gguf").toStdString();
    SyntheticModelSpec spec;
    spec.arch = "llama";
    spec.n_layer = 2;
    spec.seed = 7;
    write_synthetic_model(spec, base);
    const std::string variant = (dir + "/llama_skip.gguf").toStdString();
    const std::string first = (dir + "/llama_first_layer.gguf").toStdString();
    rewrite(base, variant, "llama_skip", 2);
    rewrite(base, first, "llama", 1);

    // The card and the loader's checks know the variant from its registry entry.
    auto f = gguf::File::open(variant);
    const ModelCard card = make_model_card(*f);
    QCOMPARE(card.architecture, std::string("llama_skip"));
    QCOMPARE(card.rope_type, std::string("norm"));
    QCOMPARE(card.n_layer, 2u);
    QVERIFY2(card.problems.empty(), card.problems.empty() ? "" : card.problems[0].c_str());
    QCOMPARE(Model::check(*f, card), std::string());

    const std::vector<int32_t> tokens = {1, 17, 42, 99, 5};
    const auto got = last_logits(variant, tokens);
    const auto ref = last_logits(first, tokens);
    QCOMPARE(got.size(), size_t{spec.n_vocab});
    QCOMPARE(ref.size(), got.size());
    int differ = 0;
    for (size_t i = 0; i < got.size(); ++i)
      if (got[i] != 0.5f * ref[i]) ++differ;
    QCOMPARE(differ, 0);
    // The skipped layer is really skipped: the full 2-layer llama differs.
    const auto full = last_logits(base, tokens);
    int same = 0;
    for (size_t i = 0; i < got.size(); ++i)
      if (full[i] == ref[i]) ++same;
    QVERIFY(same < static_cast<int>(got.size()) / 2);
  }
};

QTEST_GUILESS_MAIN(TestArchVariant)
#include "test_arch_variant.moc"
