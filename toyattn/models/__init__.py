"""The course's models, one short file each, readable top to bottom.

* :mod:`toyattn.models.one_head`    - lesson 1: one causal attention head on a 7-word vocabulary
* :mod:`toyattn.models.transformer` - lessons 2-4: a small transformer family (layers, heads, rotary
  or learned positions, attention-only or with MLP, causal or bidirectional)
"""
