// Fuzz target for chat templates: arbitrary bytes become a chat template string (Jinja source
// from an untrusted GGUF file) and a conversation, run through detect_chat_family and
// render_chat for every family.
//
// Input: byte 0 bit 0 is add_generation_prompt; the rest is split at 0x1E (record separator):
// field 0 is the template, every further field a message whose first byte picks the role
// (0/1 system, 2/3 user, 4/5 assistant, 6 "", 7 the field's text itself, mostly not a role) and
// whose remaining bytes are the content (any bytes, NUL included). Checked, besides "no crash":
//  - the detected family's name maps back to the family; an empty template is Unknown;
//  - render_chat throws moelab::Error (BadInput) exactly for Unknown or a role other than
//    system/user/assistant; otherwise every message's content appears in the prompt, and the
//    prompt without the generation prompt is a prefix of the one with it.
// Built as a libFuzzer target with clang (preset "fuzz"); with any compiler also as a replay
// driver over the committed seeds and regressions (label unit).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.h"
#include "moelab/core/error.h"
#include "moelab/tokenizer/chat.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moelab;
  if (size == 0) return 0;
  const bool add_generation_prompt = data[0] & 1;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::vector<std::string_view> fields;
  for (size_t start = 0;;) {
    const size_t end = in.find('\x1E', start);
    fields.push_back(in.substr(start, end == std::string_view::npos ? in.npos : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  const std::string_view tmpl = fields[0];
  std::vector<ChatMessage> msgs;
  bool roles_ok = true;
  for (size_t i = 1; i < fields.size(); ++i) {
    const std::string_view f = fields[i];
    const unsigned sel = f.empty() ? 0u : static_cast<unsigned char>(f[0]) % 8u;
    const std::string content(f.empty() ? f : f.substr(1));
    static const char* const kRoles[] = {"system",    "system",    "user", "user",
                                         "assistant", "assistant", ""};
    std::string role = sel < 7 ? kRoles[sel] : content;
    if (role != "system" && role != "user" && role != "assistant") roles_ok = false;
    msgs.push_back({std::move(role), content});
  }

  const ChatFamily detected = detect_chat_family(tmpl);
  MOELAB_FUZZ_CHECK(chat_family_from_name(chat_family_name(detected)) == detected, tmpl);
  if (tmpl.empty()) MOELAB_FUZZ_CHECK(detected == ChatFamily::Unknown, tmpl);

  std::vector<ChatFamily> families = chat_families();
  families.push_back(ChatFamily::Unknown);
  for (ChatFamily fam : families) {
    const bool must_throw = fam == ChatFamily::Unknown || !roles_ok;
    std::string without, with;
    try {
      without = render_chat(fam, msgs, false);
      with = render_chat(fam, msgs, add_generation_prompt);
    } catch (const Error& e) {
      MOELAB_FUZZ_CHECK(must_throw && e.kind() == ErrorKind::BadInput, e.what());
      continue;
    }
    MOELAB_FUZZ_CHECK(!must_throw, chat_family_name(fam));
    MOELAB_FUZZ_CHECK(with.compare(0, without.size(), without) == 0, chat_family_name(fam));
    for (const ChatMessage& m : msgs)
      MOELAB_FUZZ_CHECK(without.find(m.content) != std::string::npos,
                        std::string(chat_family_name(fam)) + ": " + m.role + ": " + m.content);
  }
  return 0;
}
