#include "model_loader.h"

#include <QMetaObject>

ModelLoader::ModelLoader(QObject* parent) : QObject(parent) {
  qRegisterMetaType<std::shared_ptr<const moelab::ModelCard>>();
}

ModelLoader::~ModelLoader() {
  cancel_ = true;
  join();
}

void ModelLoader::join() {
  if (worker_.joinable()) worker_.join();
}

void ModelLoader::cancel() { cancel_ = true; }

void ModelLoader::load(const QString& path) {
  cancel_ = true;
  join();
  cancel_ = false;
  busy_ = true;
  worker_ = std::thread([this, path] {
    const std::string p = path.toStdString();
    auto emit_queued = [this](auto fn) { QMetaObject::invokeMethod(this, fn, Qt::QueuedConnection); };
    try {
      auto file = moelab::gguf::File::open(p);
      auto card = std::make_shared<const moelab::ModelCard>(moelab::make_model_card(*file));
      emit_queued([this, path, card] { emit cardReady(path, card); });
      const std::string sha = moelab::sha256_file(p, [this, &emit_queued](uint64_t done, uint64_t total) {
        emit_queued([this, done, total] { emit hashProgress(qint64(done), qint64(total)); });
        return !cancel_.load();
      });
      emit_queued([this, path, sha] { emit hashReady(path, QString::fromStdString(sha)); });
    } catch (const moelab::Error& e) {
      const QString msg = QString::fromStdString(e.what());
      if (e.kind() == moelab::ErrorKind::Cancelled)
        emit_queued([this, path] { emit hashCancelled(path); });
      else
        emit_queued([this, path, msg] { emit failed(path, msg); });
    } catch (const std::exception& e) {
      const QString msg = QString::fromStdString(e.what());
      emit_queued([this, path, msg] { emit failed(path, msg); });
    }
    busy_ = false;
  });
}
