// kvlens serve: a request body checked and turned into a Job, before the model sees it (400 with an OpenAI error
// object for anything wrong). Model-free: what needs the model (rendering the template, the context size) stays
// with the server. Outside input: tests/fuzz/fuzz_serve_request.cpp feeds every parser here.
#pragma once
#include <string>
#include <vector>

#include "serve_engine.h"

namespace kvlens::serve {

// What a request is checked against: the server's command line.
struct RequestRules {
    std::string alias, model_path;  // the names a request's "model" may give (also the file name)
    SamplingParams sampling;        // defaults
    bool classifier = false;        // --classifier: "thinking": "adaptive" allowed, and the default
    int reasoning_budget = -1;      // --reasoning-budget
    std::string budget_message;     // --reasoning-budget-message
};

// The body as a JSON object (400 otherwise).
json parse_body(const std::string & body);
bool parse_stream(const json & b);
// 404 when "model" names another model.
void check_model_name(const json & b, const RequestRules & r);

// POST /v1/chat/completions: sampling, thinking, reasoning control and budget into `job` (kind Chat,
// input.question); returns the conversation to render.
std::vector<ChatMessage> parse_chat(const json & b, const RequestRules & r, Job & job);
// POST /v1/completions: sampling into `job` (kind Completion); returns the prompt text (non-empty UTF-8).
std::string parse_completion(const json & b, const RequestRules & r, Job & job);
// POST /v1/embeddings: texts and pooling knobs into `job` (kind Embed); returns the encoding ("float" | "base64").
std::string parse_embeddings(const json & b, const RequestRules & r, Job & job);
// POST /v1/chat/completions/control: the completion id of a {"id", "action": "reasoning_end"} request.
std::string parse_control(const json & b);

}  // namespace kvlens::serve
