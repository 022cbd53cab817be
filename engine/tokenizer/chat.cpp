// Chat template families: detection by marker strings, rendering written per family.
// Formats follow each model family's documented prompt format (model cards / the templates
// shipped in tokenizer_config.json); detection looks for the markers those templates contain.
#include "moelab/tokenizer/chat.h"

#include <array>

#include "moelab/core/error.h"

namespace moelab {

namespace {
struct FamilyName {
  ChatFamily f;
  std::string_view name;
};
constexpr std::array<FamilyName, 11> kNames = {{
    {ChatFamily::Unknown, "unknown"},
    {ChatFamily::ChatML, "chatml"},
    {ChatFamily::Llama2, "llama2"},
    {ChatFamily::Llama3, "llama3"},
    {ChatFamily::Mistral, "mistral"},
    {ChatFamily::Gemma, "gemma"},
    {ChatFamily::Phi3, "phi3"},
    {ChatFamily::Zephyr, "zephyr"},
    {ChatFamily::DeepSeek, "deepseek"},
    {ChatFamily::DeepSeekCoder, "deepseek-coder"},
    {ChatFamily::OLMo, "olmo"},
}};

bool has(std::string_view t, std::string_view s) {
  return t.find(s) != std::string_view::npos;
}

// Folds a leading system message into the first user message ("system\n\nuser"), for the
// families that have no system role.
std::vector<ChatMessage> fold_system(const std::vector<ChatMessage>& msgs) {
  std::vector<ChatMessage> out;
  std::string sys;
  for (const ChatMessage& m : msgs) {
    if (m.role == "system") {
      sys += (sys.empty() ? "" : "\n\n") + m.content;
      continue;
    }
    if (m.role == "user" && !sys.empty()) {
      out.push_back({m.role, sys + "\n\n" + m.content});
      sys.clear();
      continue;
    }
    out.push_back(m);
  }
  if (!sys.empty()) out.push_back({"user", sys});
  return out;
}
}  // namespace

std::string_view chat_family_name(ChatFamily f) {
  for (const auto& n : kNames)
    if (n.f == f) return n.name;
  return "unknown";
}

std::optional<ChatFamily> chat_family_from_name(std::string_view name) {
  for (const auto& n : kNames)
    if (n.name == name) return n.f;
  return std::nullopt;
}

std::vector<ChatFamily> chat_families() {
  std::vector<ChatFamily> v;
  for (const auto& n : kNames)
    if (n.f != ChatFamily::Unknown) v.push_back(n.f);
  return v;
}

ChatFamily detect_chat_family(std::string_view t) {
  if (t.empty()) return ChatFamily::Unknown;
  if (has(t, "<|im_start|>")) return ChatFamily::ChatML;
  if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>")) return ChatFamily::Llama3;
  if (has(t, "<start_of_turn>")) return ChatFamily::Gemma;
  if (has(t,
          "<\xEF\xBD\x9C"
          "Assistant\xEF\xBD\x9C>") ||
      has(t,
          "<\xEF\xBD\x9C"
          "User\xEF\xBD\x9C>"))
    return ChatFamily::DeepSeek;
  if (has(t, "### Instruction:") && has(t, "### Response:")) return ChatFamily::DeepSeekCoder;
  if (has(t, "[INST]")) return has(t, "<<SYS>>") ? ChatFamily::Llama2 : ChatFamily::Mistral;
  if (has(t, "<|assistant|>") && has(t, "<|end|>")) return ChatFamily::Phi3;
  if (const size_t u = t.find("<|user|>"); u != std::string_view::npos) {
    // Zephyr closes a user turn with the EOS text; OLMo 2 / Tulu with a newline. Look at the
    // expression that writes the user turn (up to the closing "}}").
    const size_t end = t.find("}}", u);
    const std::string_view turn = t.substr(u, end == std::string_view::npos ? 120 : end - u);
    if (has(turn, "eos_token") || has(turn, "</s>")) return ChatFamily::Zephyr;
    return ChatFamily::OLMo;
  }
  return ChatFamily::Unknown;
}

std::string render_chat(ChatFamily family, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt) {
  for (const ChatMessage& m : messages)
    if (m.role != "system" && m.role != "user" && m.role != "assistant")
      throw Error(ErrorKind::BadInput, "chat message role '" + m.role +
                                           "' is not supported (use system, user or assistant)");
  std::string s;
  switch (family) {
    case ChatFamily::Unknown:
      throw Error(ErrorKind::BadInput,
                  "the chat template is not recognised: pick a family (chatml, llama2, llama3, "
                  "mistral, gemma, phi3, zephyr, deepseek, deepseek-coder, olmo) or prompt raw");
    case ChatFamily::ChatML:
      for (const ChatMessage& m : messages)
        s += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      if (add_generation_prompt) s += "<|im_start|>assistant\n";
      break;
    case ChatFamily::Llama3:
      for (const ChatMessage& m : messages)
        s += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
      if (add_generation_prompt) s += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case ChatFamily::Llama2: {
      // [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ...
      // System messages go into the next user turn (several are joined by a blank line); system
      // text with no user turn after it gets a user turn of its own, so no content is dropped.
      std::string sys;
      bool first_user = true;
      auto user_turn = [&](const std::string& content) {
        if (!first_user) s += "<s>";
        s += "[INST] ";
        if (!sys.empty()) s += "<<SYS>>\n" + sys + "\n<</SYS>>\n\n";
        sys.clear();
        s += content + " [/INST]";
        first_user = false;
      };
      for (const ChatMessage& m : messages) {
        if (m.role == "system") {
          sys += (sys.empty() ? "" : "\n\n") + m.content;
        } else if (m.role == "user") {
          user_turn(m.content);
        } else {
          s += " " + m.content + " </s>";
        }
      }
      if (!sys.empty()) user_turn("");
      break;
    }
    case ChatFamily::Mistral: {
      bool first = true;
      for (const ChatMessage& m : fold_system(messages)) {
        if (m.role == "user") {
          s += "[INST] " + m.content + " [/INST]";
        } else {
          s += " " + m.content + "</s>";
        }
        first = false;
      }
      (void)first;
      break;
    }
    case ChatFamily::Gemma:
      for (const ChatMessage& m : fold_system(messages))
        s += "<start_of_turn>" + std::string(m.role == "assistant" ? "model" : "user") + "\n" +
             m.content + "<end_of_turn>\n";
      if (add_generation_prompt) s += "<start_of_turn>model\n";
      break;
    case ChatFamily::Phi3:
      for (const ChatMessage& m : messages) s += "<|" + m.role + "|>\n" + m.content + "<|end|>\n";
      if (add_generation_prompt) s += "<|assistant|>\n";
      break;
    case ChatFamily::Zephyr:
      for (const ChatMessage& m : messages) s += "<|" + m.role + "|>\n" + m.content + "</s>\n";
      if (add_generation_prompt) s += "<|assistant|>\n";
      break;
    case ChatFamily::OLMo:
      for (const ChatMessage& m : messages) {
        s += "<|" + m.role + "|>\n" + m.content;
        s += m.role == "assistant" ? "<|endoftext|>\n" : "\n";
      }
      if (add_generation_prompt) s += "<|assistant|>\n";
      break;
    case ChatFamily::DeepSeek: {
      const std::string user =
          "<\xEF\xBD\x9C"
          "User\xEF\xBD\x9C>";
      const std::string asst =
          "<\xEF\xBD\x9C"
          "Assistant\xEF\xBD\x9C>";
      const std::string eos =
          "<\xEF\xBD\x9C"
          "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>";
      for (const ChatMessage& m : messages) {
        if (m.role == "system")
          s += m.content;
        else if (m.role == "user")
          s += user + m.content;
        else
          s += asst + m.content + eos;
      }
      if (add_generation_prompt) s += asst;
      break;
    }
    case ChatFamily::DeepSeekCoder:
      for (const ChatMessage& m : messages) {
        if (m.role == "system")
          s += m.content + "\n";
        else if (m.role == "user")
          s += "### Instruction:\n" + m.content + "\n";
        else
          s += "### Response:\n" + m.content + "\n<|EOT|>\n";
      }
      if (add_generation_prompt) s += "### Response:\n";
      break;
  }
  return s;
}

}  // namespace moelab
