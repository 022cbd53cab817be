// moelab-cli moefy --model DENSE.gguf --calib TEXT --experts N [--shared S] --top-k K
//                  [--method cluster|contiguous] [--layout moelab|mixtral] -o MOE.gguf
// Training-free dense -> Mixture-of-Experts conversion (method: moelab/runtime/moefy.h).
#include <CLI/CLI.hpp>
#include <iomanip>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <thread>

#include "checks.h"
#include "cli.h"
#include "moelab/core/error.h"
#include "moelab/runtime/moefy.h"

namespace moelab::cli {

namespace {
struct MoefyOptions {
  MoefySpec spec;
  bool quiet = false;
  bool json = false;
};

int moefy_cmd(const MoefyOptions& o, Io io) {
  MoefySpec spec = o.spec;
  if (spec.n_threads <= 0)
    spec.n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int last = -1;
  const MoefyResult r = moefy(spec, [&](float f, std::string_view stage) {
    const int pct = static_cast<int>(f * 100);
    if (!o.quiet && pct != last) {
      io.err << "\rmoefy: " << std::setw(3) << pct << " % " << stage << "          " << std::flush;
      last = pct;
    }
    return true;
  });
  if (!o.quiet) io.err << '\n';
  double sh = 0, rt = 0;
  for (size_t i = 0; i < r.shared_hit.size(); ++i) {
    sh += r.shared_hit[i];
    rt += r.routed_hit[i];
  }
  if (!r.shared_hit.empty()) {
    sh /= static_cast<double>(r.shared_hit.size());
    rt /= static_cast<double>(r.routed_hit.size());
  }
  if (o.json) {
    io.out << nlohmann::json{{"output", spec.out_path},
                             {"architecture", r.architecture},
                             {"n_layer", r.n_layer},
                             {"n_ff", r.n_ff},
                             {"experts", spec.experts},
                             {"shared", spec.shared},
                             {"top_k", spec.top_k},
                             {"expert_n_ff", r.expert_n_ff},
                             {"method", spec.method},
                             {"layout", spec.layout},
                             {"calib_tokens", r.calib_tokens},
                             {"file_bytes", r.file_bytes},
                             {"shared_coverage", r.shared_hit},
                             {"active_coverage", r.routed_hit}}
                  .dump(2)
           << '\n';
    return kOk;
  }
  io.out << "wrote " << spec.out_path << ": " << r.architecture << ", " << r.n_layer
         << " layers, n_ff " << r.n_ff << " -> " << spec.experts << " experts x " << r.expert_n_ff
         << (spec.shared ? " + shared " + std::to_string(spec.shared * r.expert_n_ff) : "")
         << ", top-" << spec.top_k << ", method " << spec.method << ", layout " << spec.layout
         << ", " << r.calib_tokens << " calibration tokens, " << format_bytes(r.file_bytes) << '\n'
         << std::fixed << std::setprecision(3)
         << "calibration: strongly active neurons in the shared expert " << sh
         << ", in the shared expert or the router's top-" << spec.top_k << " experts " << rt
         << " (mean over layers)\n";
  return kOk;
}
}  // namespace

void add_moefy(CLI::App& app, Io io, Action& action) {
  auto o = std::make_shared<MoefyOptions>();
  auto* sub = app.add_subcommand(
      "moefy", "Convert a dense model into a Mixture-of-Experts model without training");
  auto& s = o->spec;
  sub->add_option("-m,--model", s.model_path, "Dense GGUF model (architecture llama)")->required();
  sub->add_option("--calib", s.calib_path, "Calibration text (UTF-8)")->required();
  sub->add_option("--experts", s.experts, "N routed experts")
      ->required()
      ->transform(uint_range(2, 256));
  sub->add_option("--shared", s.shared, "S shared experts (always active)")
      ->transform(uint_range(0, 64))
      ->capture_default_str();
  sub->add_option("--top-k", s.top_k, "K routed experts per token (at most N)")
      ->required()
      ->transform(uint_range(1, 256));
  sub->add_option("--method", s.method, "Neuron grouping: cluster or contiguous")
      ->capture_default_str();
  sub->add_option("--layout", s.layout,
                  "moelab (unit gating, reproduces the dense model at k:N) or mixtral "
                  "(softmax gating, loads in other engines; needs --shared 0)")
      ->capture_default_str();
  sub->add_option("--calib-tokens", s.calib_tokens, "Use at most this many calibration tokens")
      ->transform(uint_range(kMoefyMinCalibTokens, kMoefyMaxCalibTokens))
      ->capture_default_str();
  sub->add_option("--ctx", s.n_ctx, "Calibration chunk length in tokens")
      ->transform(uint_range(kMoefyMinChunk, kMaxContext))
      ->capture_default_str();
  sub->add_option("-t,--threads", s.n_threads, "CPU threads (0 = all)")
      ->transform(int_range(0, kMaxThreads));
  sub->add_option("-o,--out", s.out_path, "Output GGUF file")->required();
  sub->add_flag("-q,--quiet", o->quiet, "No progress on stderr");
  sub->add_flag("--json", o->json, "Print the result as JSON");
  sub->callback([o, io, &action] { action = [o, io] { return moefy_cmd(*o, io); }; });
}

}  // namespace moelab::cli
