// Chat template families: detection from template sources and exact rendering.
#include <QtTest>

#include "moelab/core/error.h"
#include "moelab/tokenizer/chat.h"
#include "test_support.h"

using namespace moelab;

class TestTokenizerChat : public QObject {
  Q_OBJECT
 private slots:
  void detect_data() {
    QTest::addColumn<QString>("tmpl");
    QTest::addColumn<QString>("family");
    // Abbreviated template sources with each family's markers.
    QTest::newRow("chatml") << "{% for message in messages %}{{'<|im_start|>' + message['role'] + "
                               "'\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
                            << "chatml";
    QTest::newRow("llama3")
        << "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
           "message['content'] | trim + '<|eot_id|>' }}"
        << "llama3";
    QTest::newRow("llama2")
        << "{% if message['role'] == 'system' %}{{ '<<SYS>>\\n' + content + '\\n<</SYS>>\\n\\n' "
           "}}{% endif %}{{ bos_token + '[INST] ' + content + ' [/INST]' }}"
        << "llama2";
    QTest::newRow("mistral") << "{{ bos_token }}{% for message in messages %}{% if message['role'] "
                                "== 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% "
                                "else %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}"
                             << "mistral";
    QTest::newRow("gemma")
        << "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' "
           "}}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
        << "gemma";
    QTest::newRow("phi3")
        << "{{'<|' + message['role'] + '|>' + '\\n' + message['content'] + '<|end|>\\n'}}{% if "
           "add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
        << "phi3";
    QTest::newRow("zephyr")
        << "{% if message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + eos_token "
           "}}{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n'  + message['content'] "
           "+ eos_token }}{% endif %}"
        << "zephyr";
    QTest::newRow("olmo")
        << "{% if message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '\\n' }}{% "
           "elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n'  + message['content'] + "
           "eos_token + '\\n' }}{% endif %}"
        << "olmo";
    QTest::newRow("deepseek")
        << QString::fromUtf8(
               "{{'<\xef\xbd\x9cUser\xef\xbd\x9c>' + message['content']}}{{'<\xef\xbd\x9c"
               "Assistant\xef\xbd\x9c>'}}")
        << "deepseek";
    QTest::newRow("deepseek-coder")
        << "{{'### Instruction:\\n' + message['content'] + '\\n'}}{{'### Response:\\n' + "
           "message['content'] + '\\n<|EOT|>\\n'}}"
        << "deepseek-coder";
    QTest::newRow("unknown")
        << "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\\n{% endfor %}"
        << "unknown";
    QTest::newRow("empty") << ""
                           << "unknown";
  }
  void detect() {
    QFETCH(QString, tmpl);
    QFETCH(QString, family);
    const QByteArray t = tmpl.toUtf8();
    const ChatFamily f = detect_chat_family(std::string_view(t.constData(), t.size()));
    QCOMPARE(QString::fromUtf8(chat_family_name(f).data()), family);
  }

  void namesRoundTrip() {
    for (ChatFamily f : chat_families()) {
      const auto back = chat_family_from_name(chat_family_name(f));
      QVERIFY(back.has_value());
      QCOMPARE(*back, f);
    }
    QVERIFY(!chat_family_from_name("no-such-family").has_value());
    QCOMPARE(chat_families().size(), size_t(10));
  }

  void render() {
    const std::vector<ChatMessage> conv = {
        {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "2+2?"}};
    QCOMPARE(
        render_chat(ChatFamily::ChatML, conv, true),
        std::string("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                    "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                    "<|im_start|>assistant\n"));
    QCOMPARE(render_chat(ChatFamily::Llama3, {{"user", "Hi"}}, true),
             std::string("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                         "<|start_header_id|>assistant<|end_header_id|>\n\n"));
    QCOMPARE(
        render_chat(ChatFamily::Llama2, conv, true),
        std::string(
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] 2+2? [/INST]"));
    QCOMPARE(render_chat(ChatFamily::Mistral, conv, true),
             std::string("[INST] Be brief.\n\nHi [/INST] Hello.</s>[INST] 2+2? [/INST]"));
    QCOMPARE(render_chat(ChatFamily::Gemma, conv, true),
             std::string("<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
                         "Hello.<end_of_turn>\n<start_of_turn>user\n2+2?<end_of_turn>\n"
                         "<start_of_turn>model\n"));
    QCOMPARE(render_chat(ChatFamily::Phi3, {{"user", "Hi"}}, true),
             std::string("<|user|>\nHi<|end|>\n<|assistant|>\n"));
    QCOMPARE(render_chat(ChatFamily::Zephyr, {{"user", "Hi"}}, true),
             std::string("<|user|>\nHi</s>\n<|assistant|>\n"));
    QCOMPARE(render_chat(ChatFamily::OLMo, {{"user", "Hi"}, {"assistant", "Yo"}}, false),
             std::string("<|user|>\nHi\n<|assistant|>\nYo<|endoftext|>\n"));
    QCOMPARE(render_chat(ChatFamily::DeepSeek, {{"user", "Hi"}}, true),
             std::string("<\xef\xbd\x9cUser\xef\xbd\x9c>Hi<\xef\xbd\x9c"
                         "Assistant\xef\xbd\x9c>"));
    QCOMPARE(render_chat(ChatFamily::DeepSeekCoder, {{"user", "Hi"}}, true),
             std::string("### Instruction:\nHi\n### Response:\n"));
    // No generation prompt: the conversation only.
    QCOMPARE(render_chat(ChatFamily::ChatML, {{"user", "Hi"}}, false),
             std::string("<|im_start|>user\nHi<|im_end|>\n"));
  }

  void errors() {
    QVERIFY_THROWS_EXCEPTION(Error, render_chat(ChatFamily::Unknown, {{"user", "Hi"}}, true));
    QVERIFY_THROWS_EXCEPTION(Error, render_chat(ChatFamily::ChatML, {{"tool", "x"}}, true));
  }
};

QTEST_GUILESS_MAIN(TestTokenizerChat)
#include "test_tokenizer_chat.moc"
