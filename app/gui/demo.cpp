#include "demo.h"
#include "demo_model_path.h"
#include "moelab/core/files.h"

#include <QCoreApplication>
#include <QDateTime>
#include <QDir>
#include <QFileInfo>
#include <QStandardPaths>
#include <QThread>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "card_format.h"
#include "lab_run.h"
#include "moelab/gguf/gguf.h"
#include "moelab/gguf/writer.h"
#include "moelab/runtime/synthetic_model.h"
#include "moelab/storage/writer.h"

namespace moelab::lab::demo {

QString dataDir() {
  const QByteArray xdg = qgetenv("XDG_DATA_HOME");
  const QString base =
      xdg.isEmpty() ? QDir::homePath() + "/.local/share" : QString::fromLocal8Bit(xdg);
  return base + "/moelab";
}

QString smolCachePath() {
  return QString::fromStdString(smollm2_gguf_path());
}

QString findSmol() {
  const QString p = smolCachePath();
  return QFileInfo(p).isFile() ? p : QString();
}

QString moefiedCachePath() {
  return dataDir() + "/models/" + kMoefiedName;
}

QString findMoefied() {
  const QByteArray env = qgetenv("MOELAB_MOEFIED_GGUF");
  QStringList c;
  if (!env.isEmpty()) c << QString::fromLocal8Bit(env);
  c << moefiedCachePath();
  for (const QString& p : c)
    if (QFileInfo(p).isFile()) return p;
  return {};
}

QString syntheticPath() {
  return dataDir() + "/models/moelab-demo-moe-random-weights.Q8_0.gguf";
}

namespace {
// A small SentencePiece-style vocabulary: <unk> <s> </s>, 256 byte tokens, ASCII characters
// with and without the word-start mark, and some words. Scores favour longer pieces.
void writeDemoVocab(const std::string& path) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    tokens.push_back(buf);
    types.push_back(6);
  }
  const std::string sp = "\xE2\x96\x81";  // U+2581, SentencePiece's word-start mark
  tokens.push_back(sp);
  types.push_back(1);
  for (char ch = 33; ch < 127; ++ch) {
    tokens.push_back(std::string(1, ch));
    types.push_back(1);
    if (std::isalnum(static_cast<unsigned char>(ch))) {
      tokens.push_back(sp + std::string(1, ch));
      types.push_back(1);
    }
  }
  for (const char* w :
       {"the",  "expert", "experts", "router", "token", "tokens", "model",     "mixture", "of",
        "and",  "to",     "in",      "is",     "a",     "layer",  "attention", "each",    "once",
        "upon", "time",   "there",   "was",    "moe",   "lab",    "route",     "routing"}) {
    tokens.push_back(sp + w);
    types.push_back(1);
  }
  std::vector<float> scores(tokens.size(), 0.f);
  for (size_t i = 0; i < tokens.size(); ++i)
    scores[i] = types[i] == 1 ? -100.f + float(tokens[i].size()) * 10.f : 0.f;
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", "moelab demo vocabulary");
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_array_string("tokenizer.ggml.tokens", tokens);
  w.set_array_f32("tokenizer.ggml.scores", scores);
  w.set_array_i32("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.unknown_token_id", 0);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_bool("tokenizer.ggml.add_eos_token", false);
  w.write(path);
}
}  // namespace

QString ensureSynthetic(QString* error) {
  const QString path = syntheticPath();
  if (QFileInfo(path).isFile()) return path;
  try {
    QDir().mkpath(QFileInfo(path).absolutePath());
    const std::string vocab =
        (QFileInfo(path).absolutePath() + "/moelab-demo-vocab.gguf").toStdString();
    writeDemoVocab(vocab);
    SyntheticModelSpec s;
    s.arch = "mixtral";
    s.n_embd = 128;
    s.n_layer = 4;
    s.n_head = 4;
    s.n_head_kv = 2;
    s.n_ff = 256;
    s.expert_count = 8;
    s.expert_used_count = 2;
    s.context_length = 2048;
    s.type = gguf::TensorType::Q8_0;
    s.seed = 7;
    s.vocab_from = vocab;
    write_synthetic_model(s, path.toStdString());
    return path;
  } catch (const std::exception& e) {
    if (error) *error = QString::fromStdString(e.what());
    return {};
  }
}

QString fetchScript() {
  const QString app = QCoreApplication::applicationDirPath();
  for (const QString& c :
       {app + "/../../../scripts/fetch-demo-model.sh", app + "/../../scripts/fetch-demo-model.sh",
        app + "/../share/moelab/fetch-demo-model.sh",
        QDir::currentPath() + "/scripts/fetch-demo-model.sh"})
    if (QFileInfo(c).isFile()) return QFileInfo(c).canonicalFilePath();
  return {};
}

QString promptFor(const QString& modelPath, bool* chat) {
  const bool smol = modelPath.contains("SmolLM2", Qt::CaseInsensitive);
  if (chat) *chat = smol;
  if (smol) return QStringLiteral("In two sentences: what is a mixture-of-experts language model?");
  return QStringLiteral("Once upon a time, the router sent each token to the experts");
}

int runHeadless(const QString& outDir, const QString& db) {
  QDir().mkpath(outDir);
  QString err;
  QStringList models;
  const QString synth = ensureSynthetic(&err);
  if (synth.isEmpty()) {
    std::fprintf(stderr, "moelab: could not write the synthetic demo model: %s\n", qPrintable(err));
    return 1;
  }
  models << synth;
  const QString moefied = findMoefied();
  if (!moefied.isEmpty())
    models << moefied;
  else
    std::fprintf(stderr,
                 "moelab: the moefied SmolLM2 is not cached (scripts/run.sh writes it); the "
                 "random-weight MoE is the only MoE of this demo\n");
  const QString smol = findSmol();
  if (!smol.isEmpty())
    models << smol;
  else
    std::fprintf(stderr,
                 "moelab: SmolLM2-135M-Instruct is not cached (run scripts/fetch-demo-model.sh); "
                 "demo runs the synthetic model only\n");

  const std::string session =
      ("demo " + QDateTime::currentDateTime().toString("yyyy-MM-dd hh:mm:ss")).toStdString();
  nlohmann::json summary;
  summary["session"] = session;
  summary["database"] = db.toStdString();
  summary["runs"] = nlohmann::json::array();
  int rc = 0;
  try {
    storage::AsyncWriter writer(db.toStdString());
    for (const QString& m : models) {
      RunSettings s;
      bool chat = false;
      s.prompt = promptFor(m, &chat).toStdString();
      s.chat = chat;
      s.max_tokens = 48;
      s.sampling.temperature = 0;
      s.sampling.seed = 42;
      s.threads = default_threads();
      LoadOptions lo;
      // auto: the GPU when usable, as the lab
      lo.backend = parse_backend(load_backend_for(s.backend));
      auto model = Model::load(m.toStdString(), lo);
      Generator gen(model, s.context_params(model->card().context_length));
      ModelIdentity id;
      id.path = m.toStdString();
      id.sha256 = sha256_file(id.path);
      // The model row carries the card JSON (reports show its name and hyper-parameters).
      const RecordedRun r =
          record_generation(gen, s, writer, session, id, {}, default_powercap_root());
      nlohmann::json j;
      j["model"] = id.path;
      j["sha256"] = id.sha256;
      j["architecture"] = model->card().architecture;
      j["run_id"] = r.run_id;
      j["status"] = storage::status_name(r.status);
      j["prompt"] = s.prompt;
      j["chat"] = s.chat;
      j["text"] = r.result.text;
      j["generated_tokens"] = r.result.tokens.size();
      j["routing_records"] = r.routing_records;
      j["ttft_ms"] = r.result.ttft_ms;
      j["tokens_per_s"] = r.result.tokens_per_s;
      if (!r.error.empty()) {
        j["error"] = r.error;
        rc = 1;
      }
      summary["runs"].push_back(j);
      std::printf("%s: run #%lld, %zu tokens, %.1f tokens/s, ttft %.1f ms\n  %s\n",
                  QFileInfo(m).fileName().toUtf8().constData(), (long long)r.run_id,
                  r.result.tokens.size(), r.result.tokens_per_s, r.result.ttft_ms,
                  r.result.text.substr(0, 200).c_str());
    }
    writer.flush();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moelab: headless demo failed: %s\n", e.what());
    return 1;
  }
  const QString out = outDir + "/demo-summary.json";
  try {  // as every writer: a temporary in the same folder, renamed when complete
    moelab::write_file_atomic(
        out.toStdString(),
        summary.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moelab: cannot write the demo summary: %s\n", e.what());
    return 1;
  }
  std::printf("moelab: stored session \"%s\" in %s\nmoelab: wrote %s\n", session.c_str(),
              qPrintable(db), qPrintable(out));
  return rc;
}

}  // namespace moelab::lab::demo
