// The fixture models of ../shared: fixtures/models (oracle llama.cpp c392e50) and
// fixtures/models-0c1e570 (the Turn-2 architectures, oracle llama.cpp 0c1e570), one entry per
// <name>.<TYPE>.gguf with its architecture read from the file.
#pragma once

#include <QDir>
#include <QString>
#include <algorithm>
#include <string>
#include <vector>

#include "moelab/gguf/gguf.h"
#include "moelab/model/card.h"
#include "test_support.h"

namespace moelab::test {

struct FixtureModel {
  QString base;      // path without ".gguf"
  QString name;      // "mixtral-moe.F32"
  QString type;      // "F32"
  std::string arch;  // general.architecture
  bool is_float() const { return type == "F32" || type == "F16"; }
  bool supported() const {
    const auto& s = supported_architectures();
    return std::find(s.begin(), s.end(), arch) != s.end();
  }
};

// Every fixture model, folder by folder, in name order.
inline std::vector<FixtureModel> fixture_models() {
  std::vector<FixtureModel> out;
  for (const char* dir : {"fixtures/models", "fixtures/models-0c1e570"}) {
    QDir models(shared_dir() + "/" + dir);
    for (const QString& d : models.entryList(QDir::Dirs | QDir::NoDotAndDotDot, QDir::Name)) {
      QDir sub(models.filePath(d));
      for (const QString& f : sub.entryList({"*.gguf"}, QDir::Files, QDir::Name)) {
        FixtureModel fx;
        fx.base = sub.filePath(f.left(f.size() - 5));
        fx.name = f.left(f.size() - 5);
        fx.type = fx.name.section('.', -1);
        fx.arch =
            gguf::File::open((fx.base + ".gguf").toStdString())->get_string("general.architecture");
        out.push_back(fx);
      }
    }
  }
  return out;
}

// The fixture models whose architecture moelab runs.
inline std::vector<FixtureModel> runnable_fixture_models() {
  std::vector<FixtureModel> out;
  for (auto& f : fixture_models())
    if (f.supported()) out.push_back(f);
  return out;
}

}  // namespace moelab::test
