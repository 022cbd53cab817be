// Chat templates: recognise the family of a model's tokenizer.chat_template (a Jinja template)
// by its marker strings and render a conversation in that family's format. moelab does not run
// Jinja; each family's format is written out by hand from the model cards' documented prompt
// formats. A template that matches no family is reported as ChatFamily::Unknown, and the caller
// can pick a family by name or prompt raw.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moelab {

enum class ChatFamily {
  Unknown,
  ChatML,    // <|im_start|>role\n...<|im_end|>  (Qwen, SmolLM, many fine-tunes)
  Llama2,    // [INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST]
  Llama3,    // <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
  Mistral,   // [INST] ... [/INST] (system text folded into the first user turn)
  Gemma,     // <start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n
  Phi3,      // <|user|>\n...<|end|>\n<|assistant|>\n
  Zephyr,    // <|user|>\n...</s>\n<|assistant|>\n
  DeepSeek,  // <｜User｜>...<｜Assistant｜>...<｜end▁of▁sentence｜> (DeepSeek V3 / R1)
  DeepSeekCoder,  // ### Instruction:\n...\n### Response:\n
  OLMo,           // <|user|>\n...\n<|assistant|>\n...<|endoftext|>\n (OLMo 2, OLMoE, Tulu)
};

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

/// Stable lower-case name ("chatml", "llama2", ..., "unknown").
std::string_view chat_family_name(ChatFamily f);
/// Family by name (as chat_family_name prints it), or nullopt.
std::optional<ChatFamily> chat_family_from_name(std::string_view name);
/// All families except Unknown, in declaration order.
std::vector<ChatFamily> chat_families();

/// Detects the family from the Jinja source of tokenizer.chat_template; Unknown when no
/// family's markers are found (also for an empty template).
ChatFamily detect_chat_family(std::string_view chat_template);

/// Renders the conversation as prompt text in the family's format. Special-token text
/// (`<|im_start|>`, `[INST]`) is written literally: encode the result with parse_special = true.
/// The BOS token is NOT written (encode with add_special = true adds it when the vocabulary
/// wants one). add_generation_prompt appends the opening of an assistant turn.
/// Throws moelab::Error (BadInput) for ChatFamily::Unknown or a role other than
/// system/user/assistant.
std::string render_chat(ChatFamily family, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt);

}  // namespace moelab
