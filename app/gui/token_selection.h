// The selected token, one for the whole lab: the Output pane, the routing grid, attention,
// latency and expert load all show (and change) the same selection. This header is the Qt-free
// model - the selection state, token search and the words/cells that describe a token - built
// on the tokens the Output pane holds for the run on show (lab::LiveToken: live as they stream,
// or read back from the store by OutputView::showStoredRun). TokenLinker (token_linker.h) wires
// it to the widgets.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "lab_run.h"

namespace moelab::lab {

/// Which token is selected. Generated tokens are named by their run position (0 = the first
/// generated token, as stored in TokenRecord::position and RoutingRecord::position); prompt
/// tokens (selectable on the prompt-attention map only) by their prompt position.
struct TokenSelection {
  enum class Part { kNone, kGenerated, kPrompt };
  Part part = Part::kNone;
  int64_t position = -1;
  bool operator==(const TokenSelection&) const = default;
  bool empty() const { return part == Part::kNone; }
  /// The generated token's position, -1 when none or a prompt token is selected.
  int64_t generated() const { return part == Part::kGenerated ? position : -1; }
};

/// The selection state with change listeners (called synchronously, in order of adding, only
/// when the selection really changes).
class TokenSelectionModel {
 public:
  using Listener = std::function<void(const TokenSelection&)>;
  void add_listener(Listener l) { listeners_.push_back(std::move(l)); }
  /// Selects generated token `position` (negative: clears).
  void select_generated(int64_t position);
  /// Selects prompt token `position` (negative: clears).
  void select_prompt(int64_t position);
  void clear();
  const TokenSelection& current() const { return sel_; }

 private:
  void set(TokenSelection s);
  TokenSelection sel_;
  std::vector<Listener> listeners_;
};

/// A token search. `text` is a substring of the token's text (byte-exact UTF-8; with
/// case_sensitive = false, ASCII letters match either case - other scripts match as written),
/// or with by_id a decimal token id (the vocabulary id).
struct TokenQuery {
  std::string text;
  bool case_sensitive = false;
  bool by_id = false;
};

/// Parses a by-id query: the decimal id (leading/trailing spaces allowed), or -1 when `text` is
/// not a non-negative integer that fits int32.
int64_t parse_token_id(const std::string& text);

/// Run positions (ascending) of the tokens in tokens[from..] that match `q`; tokens with index
/// < 0 (text released only at the end) are skipped. An empty query (or an unparsable id)
/// matches nothing. Appending tokens and searching from the old size gives the same result as a
/// full search (live runs search only what arrived).
std::vector<int64_t> find_tokens(const std::vector<LiveToken>& tokens, const TokenQuery& q,
                                 size_t from = 0);

/// The status line for token `t` at layer `layer`: "token 17 ' the' (id 312) — layer 3:
/// experts 2, 5 (0.61, 0.39)" with the stored mixing weights (2 decimals; "n/a" where none);
/// "— layer 3: not routed" for a dense layer, no layer part when the token has no routing.
/// Control characters in the text are shown as escapes (\n, \t, \xNN).
std::string describe_token(const LiveToken& t, int layer);

/// A token's text for one line: control characters as \n, \t, \r or \xNN.
std::string printable_piece(const std::string& piece);

/// (layer, expert) for every expert token `t` used, layer by layer in the order chosen.
std::vector<std::pair<int, int>> expert_cells(const LiveToken& t);

}  // namespace moelab::lab
