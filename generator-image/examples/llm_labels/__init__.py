"""A sample LLM generator: labels the sentiment of short texts through any OpenAI-compatible
endpoint (a hosted API, vLLM, a llama.cpp server), under the scope's token limit. Needs the
`openai` Python client (in the dev extra; add it to your generator image)."""
