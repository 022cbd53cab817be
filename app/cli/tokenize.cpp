// moelab-cli tokenize --model FILE (--text STR | --file PATH) [--no-bos] [--special] [--json]
// moelab-cli detokenize --model FILE --ids 1,2,3 [--special]
#include <CLI/CLI.hpp>
#include <iomanip>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>

#include "checks.h"
#include "cli.h"
#include "moelab/core/error.h"
#include "moelab/core/files.h"
#include "moelab/gguf/gguf.h"
#include "moelab/tokenizer/tokenizer.h"

namespace moelab::cli {

namespace {

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  const auto file = gguf::File::open(path);
  if (!file->find("tokenizer.ggml.model"))
    throw Error(ErrorKind::BadInput, "the file has no tokenizer (no tokenizer.ggml.* metadata)",
                {path, std::nullopt, "tokenizer.ggml.model"});
  return Tokenizer::from_gguf(*file);
}

struct TokenizeOptions {
  std::string model, text, file;
  bool no_bos = false, special = false, json = false;
};

int tokenize(const TokenizeOptions& o, Io io) {
  std::string text = o.text;
  if (!o.file.empty()) {
    // Any bytes are tokenized, from a bounded regular file (moelab/core/files.h).
    text = read_text_file(o.file, "text file");
  }
  const auto tok = load_tokenizer(o.model);
  EncodeOptions eo;
  eo.parse_special = o.special;
  if (o.no_bos) eo.add_bos = false;
  const std::vector<int32_t> ids = tok->encode(text, eo);
  if (o.json) {
    nlohmann::json j;
    j["ids"] = ids;
    auto pieces = nlohmann::json::array();
    auto display = nlohmann::json::array();
    for (int32_t id : ids) {
      // Exact piece text; a piece that is part of a UTF-8 sequence is shown as U+FFFD here.
      pieces.push_back(utf8_take_complete(tok->token_to_piece(id, true), false, nullptr));
      display.push_back(tok->display_piece(id));
    }
    j["pieces"] = std::move(pieces);
    j["display"] = std::move(display);
    j["n_tokens"] = ids.size();
    io.out << json_text(j, -1) << '\n';
  } else {
    for (int32_t id : ids)
      // Control tokens show their vocabulary text: escaped, it cannot drive the terminal.
      io.out << std::setw(8) << id << " -> '" << printable(tok->display_piece(id)) << "'\n";
    io.out << ids.size() << " tokens\n";
  }
  return kOk;
}

struct DetokenizeOptions {
  std::string model, ids;
  bool special = false;
};

int detokenize(const DetokenizeOptions& o, Io io) {
  const auto tok = load_tokenizer(o.model);
  const std::vector<int32_t> ids =
      parse_token_ids(o.ids, "--ids", static_cast<uint32_t>(tok->n_vocab()));
  DecodeOptions d;
  d.render_special = o.special;
  io.out << tok->decode(ids, d) << '\n';
  return kOk;
}

}  // namespace

void add_tokenize(CLI::App& app, Io io, Action& action) {
  auto o = std::make_shared<TokenizeOptions>();
  auto* sub = app.add_subcommand("tokenize", "Turn text into token ids with a model's tokenizer");
  sub->add_option("--model,-m", o->model, "GGUF model (or vocab-only) file")->required();
  auto* text = sub->add_option("--text,-t", o->text, "Text to tokenize");
  auto* file = sub->add_option("--file,-f", o->file, "File whose bytes are tokenized");
  text->excludes(file);
  file->excludes(text);
  sub->add_flag("--no-bos", o->no_bos, "Do not add BOS even if the vocabulary asks for it");
  sub->add_flag("--special", o->special,
                "Parse special-token text (<s>, <|im_start|>) as control tokens");
  sub->add_flag("--json", o->json, "Print {\"ids\": [...], \"pieces\": [...]} as JSON");
  sub->callback([o, io, &action, text, file] {
    if (text->count() == 0 && file->count() == 0)
      throw CLI::ValidationError("tokenize", "one of --text or --file is required");
    action = [o, io] { return tokenize(*o, io); };
  });
}

void add_detokenize(CLI::App& app, Io io, Action& action) {
  auto o = std::make_shared<DetokenizeOptions>();
  auto* sub = app.add_subcommand("detokenize", "Turn token ids back into text");
  sub->add_option("--model,-m", o->model, "GGUF model (or vocab-only) file")->required();
  sub->add_option("--ids", o->ids, "Token ids, comma separated (1,2,3)")->required();
  sub->add_flag("--special", o->special, "Render control tokens (<s>, </s>) as their text");
  sub->callback([o, io, &action] { action = [o, io] { return detokenize(*o, io); }; });
}

}  // namespace moelab::cli
