"""ssl_teach: self-supervised learning for images, taught through its classic pretext tasks.

The data flows one way, and so do the modules: ``data`` (images) -> ``pretext`` (inputs and
targets) -> ``models`` (backbone and heads) -> ``train`` (the loop and the checkpoint cache)
-> ``probe`` (frozen features, linear and k-NN) -> ``viz`` and ``widgets`` (what the network
learned). ``experiment`` ties them together for the notebooks and the CLI.
"""

__version__ = "0.1.0"
