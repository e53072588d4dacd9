// The reasoner's byte-level BPE vocabulary (GPT-2 byte encoding, qwen2 pre-tokenizer) and chat template.
#pragma once
#include <string>
#include <vector>

struct gguf_context;

namespace kvlens::train {

struct Vocab {
    std::vector<std::string> tokens;  // GPT-2 byte-to-unicode form
    std::vector<int32_t> types;       // 1 normal, 3 control, 4 user-defined
    std::vector<std::string> merges;  // "a b", ranked
    int id_endoftext = -1, id_im_start = -1, id_im_end = -1, id_think = -1, id_think_end = -1;
};

const Vocab & reasoner_vocab();
extern const char * const kChatTemplate;  // the committed model's ChatML + think template

// Qwen3's real chat template, read from the pinned llama.cpp tree at run time
// (KVLENS_LLAMA_DIR/models/templates/Qwen-Qwen3-0.6B.jinja; the path is a compile definition). Throws when the
// file cannot be read.
std::string qwen3_chat_template();
std::string qwen3_chat_template_path();

// Writes tokenizer.* keys (model gpt2, pre qwen2, tokens, types, merges, special ids, chat template: kChatTemplate
// when chat_template is empty).
void write_vocab(gguf_context * g, const Vocab & v, const std::string & chat_template = "");

}  // namespace kvlens::train
