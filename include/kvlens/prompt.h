// The one prompt builder: a question as the model's own chat template renders it, and the fast/slow mode
// prefixes derived from that template (llama.cpp's Jinja engine, `common` chat templates, as llama-server
// does with --jinja). Every command that builds a chat prompt goes through PromptFormat.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvlens/model.h"

namespace kvlens {

// Which generation prompt: fast = the template with enable_thinking=false, slow = enable_thinking=true (and a
// think opener when the template leaves it to the model), none = the template's default (what llama-server
// sends when the request says nothing).
enum class PromptMode { None, Fast, Slow };
const char * to_string(PromptMode m);
PromptMode parse_prompt_mode(const std::string & s);  // none | fast | slow (also off/on/auto, llama.cpp's --reasoning)

struct PromptOptions {
    // auto: derived from the chat template (hand-written qwen3 when the model has none); paper: the authors'
    // strings (fast "<think>\n</think>\n\n", slow "<think>\n") after the template's user turn; qwen3 | chatml | r1:
    // kvlens's earlier hand-written formats (user turn and prefixes; qwen3 fast = the authors' string, r1 fast
    // "<think>\n\n</think>\n\n"), ignoring the model's template — what a model without a template gets.
    std::string format = "auto";
    std::string chat_template;          // override: Jinja text, or a llama.cpp built-in name (e.g. chatml)
    bool jinja = true;                  // false: llama.cpp's built-in renderers (--no-jinja)
    std::optional<std::string> fast_prefix, slow_prefix;  // override the derived prefixes
};

struct PromptFormat {
    std::string name;                      // template | paper | qwen3 | r1
    std::string fast_prefix, slow_prefix;  // appended after the assistant opener
    std::string none_prefix;               // the template's default generation prompt tail (often "")
    std::string to_fast = "</think>\n\n";  // control text of a slow -> fast switch
    std::string to_slow = "<think>\n";     // control text of a fast -> slow switch
    std::string think_open = "<think>", think_close = "</think>";
    bool thinking = true;                  // the template has a thinking mode (fast and slow differ)
    bool slow_opener_added = false;        // the template leaves "<think>" to the model; kvlens forces it

    // The user turn + assistant opener for a question (no mode prefix).
    std::string render(const Model & m, const std::string & question) const;
    // A conversation (system/user/assistant turns, the last one a user turn) + assistant opener, no mode prefix.
    // For one user turn it equals render(m, content). Throws kvlens::Error for an empty list, a role other than
    // system/user/assistant, or a last turn that is not the user's.
    std::string render_messages(const Model & m, const std::vector<ChatMessage> & msgs) const;
    const std::string & prefix(PromptMode mode) const;
    // Tokens with BOS exactly as the model's tokenizer wants it (once, also when the text already starts with it).
    static std::vector<Token> tokenize(const Model & m, const std::string & text);
    // user turn + mode prefix, tokenized; throws when the two pieces do not tokenize as the whole text does.
    std::vector<Token> tokens(const Model & m, const std::string & question, PromptMode mode) const;
    // A line for records and signatures: name and the prefixes, escaped.
    std::string describe() const;

    struct Impl;
    std::shared_ptr<const Impl> impl;  // the parsed template (null: hand-written format)
};

// Builds the format for a model; throws kvlens::Error for an unknown format or a template that cannot render.
PromptFormat prompt_format(const Model & m, const PromptOptions & o);
PromptFormat prompt_format(const Model & m, const std::string & format = "auto");

// "\n", "\t", "\\" in a flag value (llama.cpp's --escape for prompts and prefixes).
std::string unescape(const std::string & s);
std::string escape(const std::string & s);

// llama.cpp's --verbose-prompt: one line per token, "ID -> 'PIECE'", to stderr.
void print_verbose_prompt(const Model & m, const std::vector<Token> & toks, const char * what = "prompt");

}  // namespace kvlens
