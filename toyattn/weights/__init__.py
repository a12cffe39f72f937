"""Reading real weights: GGUF and llama.cpp's conventions, safetensors checkpoints, and the models the course ships.

:mod:`~toyattn.weights.gguf` (a GGUF file, and llama.cpp's row order), :mod:`~toyattn.weights.checkpoints`
(queries and keys of any checkpoint, layer by layer; lesson 3), :mod:`~toyattn.weights.llama` (SmolLM2
into the course's Llama; lesson 5), :mod:`~toyattn.weights.bert` (a BERT layer; lesson 2),
:mod:`~toyattn.weights.pretrained` (where the packaged models are).
"""
