#include "model_loader.h"

#include <QMetaObject>
#include <chrono>

#include "card_format.h"

ModelLoader::ModelLoader(QObject* parent) : QObject(parent) {
  qRegisterMetaType<std::shared_ptr<const moelab::ModelCard>>();
  qRegisterMetaType<std::shared_ptr<const moelab::Model>>();
}

ModelLoader::~ModelLoader() {
  cancel_ = true;
  join();
}

void ModelLoader::join() {
  if (worker_.joinable()) worker_.join();
}

void ModelLoader::cancel() {
  cancel_ = true;
}

void ModelLoader::load(const QString& path, const QString& backend) {
  cancel_ = true;
  join();
  cancel_ = false;
  busy_ = true;
  worker_ = std::thread([this, path, backend] {
    const std::string p = path.toStdString();
    auto emit_queued = [this](auto fn) {
      QMetaObject::invokeMethod(this, fn, Qt::QueuedConnection);
    };
    bool loading = false;
    try {
      auto file = moelab::gguf::File::open(p);
      auto card = std::make_shared<const moelab::ModelCard>(moelab::make_model_card(*file));
      const QString json = QString::fromStdString(
          moelab::card_to_json(*card, *file, {}, false)
              .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      file.reset();
      emit_queued([this, path, card, json] { emit cardReady(path, card, json); });
      if (card->problems.empty()) {
        loading = true;
        moelab::LoadOptions opts;
        opts.backend = moelab::parse_backend(backend.toStdString());
        auto last = std::chrono::steady_clock::now() - std::chrono::seconds(1);
        opts.progress = [&](float f) {
          if (hook_) hook_(f);
          const auto now = std::chrono::steady_clock::now();
          if (now - last > std::chrono::milliseconds(30) || f >= 1.f) {  // bounded signal rate
            last = now;
            const int pm = int(f * 1000);
            emit_queued([this, path, pm] { emit loadProgress(path, pm); });
          }
          return !cancel_.load();
        };
        std::shared_ptr<const moelab::Model> model = moelab::Model::load(p, opts);
        loading = false;
        emit_queued([this, path, model] { emit modelReady(path, model); });
      }
      const std::string sha =
          moelab::sha256_file(p, [this, &emit_queued](uint64_t done, uint64_t total) {
            emit_queued([this, done, total] { emit hashProgress(qint64(done), qint64(total)); });
            return !cancel_.load();
          });
      emit_queued([this, path, sha] { emit hashReady(path, QString::fromStdString(sha)); });
    } catch (const moelab::Error& e) {
      const QString msg = QString::fromStdString(e.what());
      if (e.kind() == moelab::ErrorKind::Cancelled) {
        if (loading)
          emit_queued([this, path] { emit loadCancelled(path); });
        else
          emit_queued([this, path] { emit hashCancelled(path); });
      } else if (loading) {
        emit_queued([this, path, msg] { emit loadFailed(path, msg); });
      } else {
        emit_queued([this, path, msg] { emit failed(path, msg); });
      }
    } catch (const std::exception& e) {
      const QString msg = QString::fromStdString(e.what());
      emit_queued([this, path, msg, loading] {
        if (loading)
          emit loadFailed(path, msg);
        else
          emit failed(path, msg);
      });
    }
    busy_ = false;
  });
}
