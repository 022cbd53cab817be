// moelab-cli inspect FILE [--json] [--tensors] [--no-hash] [--check] [--ctx N]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <iomanip>
#include <memory>
#include <ostream>

#include "../common/card_format.h"
#include "checks.h"
#include "cli.h"
#include "moelab/gguf/gguf.h"
#include "moelab/model/card.h"
#include "moelab/model/model.h"

namespace moelab::cli {

namespace {
struct InspectOptions {
  std::string file;
  bool json = false;
  bool tensors = false;
  bool no_hash = false;
  bool check = false;
  uint64_t n_ctx = 0;
};

int inspect(const InspectOptions& o, Io io) {
  const auto file = gguf::File::open(o.file);
  ModelCard card = make_model_card(*file);
  // The card's verdict is load's: run every check Model::load makes (configuration, weights,
  // tokenizer), so "runnable yes" means `run` accepts the file.
  if (card.problems.empty())
    if (std::string why = Model::check(*file, card); !why.empty()) card.problems.push_back(why);
  const std::string sha = o.no_hash ? std::string() : sha256_file(o.file);
  // The default estimate is at the context a run gets by default (--ctx for another).
  const uint64_t n_ctx = o.n_ctx ? o.n_ctx : default_n_ctx(card.context_length);
  if (o.json) {
    auto j = card_to_json(card, *file, sha, o.tensors);
    if (o.n_ctx)
      j["memory"] = {{"n_ctx", n_ctx},
                     {"f16_bytes", card.memory_estimate(n_ctx, 2)},
                     {"f32_bytes", card.memory_estimate(n_ctx, 4)}};
    // Metadata strings are bytes from the file: invalid UTF-8 becomes U+FFFD, and JSON escapes
    // control characters, so the output is valid JSON whatever the file holds.
    io.out << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  } else {
    // Text from the file (names, metadata values, tensor names) goes through printable():
    // escape sequences and NUL bytes in metadata never reach the terminal.
    io.out << "model card: " << printable(o.file) << '\n';
    for (const auto& [k, v] : card_rows(card, sha, n_ctx))
      io.out << "  " << std::left << std::setw(18) << printable(k) << ' ' << printable(v) << '\n';
    for (size_t i = 1; i < card.problems.size(); ++i)
      io.out << "  " << std::setw(18) << "" << ' ' << printable(card.problems[i]) << '\n';
    if (o.tensors) {
      io.out << "tensors:\n";
      for (const auto& t : file->tensors())
        io.out << "  " << std::left << std::setw(32) << printable(t.name) << ' ' << std::setw(6)
               << gguf::type_name(t.type) << ' ' << std::setw(20) << t.shape_string() << ' '
               << format_bytes(t.nbytes) << '\n';
    }
  }
  if (o.check && !card.problems.empty()) {
    io.err << "error: " << printable(o.file)
           << ": cannot be run: " << printable(card.problems.front()) << '\n';
    return kBadInput;
  }
  return kOk;
}
}  // namespace

void add_inspect(CLI::App& app, Io io, Action& action) {
  auto o = std::make_shared<InspectOptions>();
  auto* sub = app.add_subcommand("inspect", "Validate a GGUF model file and print its model card");
  sub->add_option("FILE", o->file, "GGUF model file")->required();
  sub->add_flag("--json", o->json, "Print the card as JSON (stable keys)");
  sub->add_flag("--tensors", o->tensors, "Also list every tensor (name, type, shape, bytes)");
  sub->add_flag("--no-hash", o->no_hash, "Skip the SHA-256 of the file (faster on big files)");
  sub->add_flag("--check", o->check,
                "Exit 2 unless the engine can run the file (required tensors and shapes)");
  sub->add_option("--ctx", o->n_ctx, "Context length for the memory estimate (tokens)")
      ->transform(int_range(1, kMaxContext));
  sub->callback([o, io, &action] { action = [o, io] { return inspect(*o, io); }; });
}

}  // namespace moelab::cli
