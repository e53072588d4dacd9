// Byte-level BPE vocabulary: 256 byte tokens, a few merges for the chat scaffolding, Qwen3's special tokens.
#include "vocab.h"

#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "gguf.h"

namespace kvlens::train {

const char * const kChatTemplate =
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}";

#ifndef KVLENS_LLAMA_DIR
#define KVLENS_LLAMA_DIR "third_party/llama.cpp"
#endif

std::string qwen3_chat_template_path() { return std::string(KVLENS_LLAMA_DIR) + "/models/templates/Qwen-Qwen3-0.6B.jinja"; }

std::string qwen3_chat_template() {
    const std::string path = qwen3_chat_template_path();
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot read Qwen3's chat template " + path);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

namespace {

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to U+0100 upwards.
std::string byte_to_unicode(int b) {
    static std::vector<std::string> table = [] {
        std::vector<int> cp(256, -1);
        int n = 0;
        for (int c = 0; c < 256; ++c) {
            if ((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255)) cp[c] = c;
        }
        for (int c = 0; c < 256; ++c) {
            if (cp[c] < 0) cp[c] = 256 + n++;
        }
        std::vector<std::string> t(256);
        for (int c = 0; c < 256; ++c) {
            const int u = cp[c];
            std::string s;
            if (u < 0x80) {
                s += char(u);
            } else {
                s += char(0xC0 | (u >> 6));
                s += char(0x80 | (u & 0x3F));
            }
            t[c] = s;
        }
        return t;
    }();
    return table[b];
}

Vocab build() {
    Vocab v;
    for (int b = 0; b < 256; ++b) {
        v.tokens.push_back(byte_to_unicode(b));
        v.types.push_back(1);
    }
    const std::string nl = byte_to_unicode('\n');
    // ranked merges: "\n\n", "user", "assistant"
    const std::vector<std::pair<std::string, std::string>> merges = {
        {nl, nl}, {"u", "s"}, {"e", "r"}, {"us", "er"}, {"a", "s"}, {"as", "s"}, {"i", "s"},
        {"is", "t"}, {"ass", "ist"}, {"a", "n"}, {"an", "t"}, {"assist", "ant"},
    };
    for (const auto & m : merges) {
        v.merges.push_back(m.first + " " + m.second);
        v.tokens.push_back(m.first + m.second);
        v.types.push_back(1);
    }
    auto add = [&](const char * s, int type) {
        v.tokens.push_back(s);
        v.types.push_back(type);
        return int(v.tokens.size()) - 1;
    };
    v.id_endoftext = add("<|endoftext|>", 3);
    v.id_im_start = add("<|im_start|>", 3);
    v.id_im_end = add("<|im_end|>", 3);
    // As in Qwen3's GGUF: the think tags are user-defined (rendered in text), not control tokens.
    v.id_think = add("<think>", 4);
    v.id_think_end = add("</think>", 4);
    return v;
}

}  // namespace

const Vocab & reasoner_vocab() {
    static const Vocab v = build();
    return v;
}

void write_vocab(gguf_context * g, const Vocab & v, const std::string & chat_template) {
    gguf_set_val_str(g, "tokenizer.ggml.model", "gpt2");
    gguf_set_val_str(g, "tokenizer.ggml.pre", "qwen2");
    std::vector<const char *> toks, merges;
    for (const auto & t : v.tokens) toks.push_back(t.c_str());
    for (const auto & m : v.merges) merges.push_back(m.c_str());
    gguf_set_arr_str(g, "tokenizer.ggml.tokens", toks.data(), toks.size());
    gguf_set_arr_data(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v.types.data(), v.types.size());
    gguf_set_arr_str(g, "tokenizer.ggml.merges", merges.data(), merges.size());
    gguf_set_val_u32(g, "tokenizer.ggml.eos_token_id", v.id_im_end);
    gguf_set_val_u32(g, "tokenizer.ggml.eot_token_id", v.id_im_end);
    gguf_set_val_u32(g, "tokenizer.ggml.bos_token_id", v.id_endoftext);
    gguf_set_val_u32(g, "tokenizer.ggml.padding_token_id", v.id_endoftext);
    gguf_set_val_bool(g, "tokenizer.ggml.add_bos_token", false);
    gguf_set_val_str(g, "tokenizer.chat_template", chat_template.empty() ? kChatTemplate : chat_template.c_str());
}

}  // namespace kvlens::train
