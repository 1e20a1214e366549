"""avaction_train: offline training and export of the avaction model bundles (models/*/).

Modules (run the ones with a command line as `python -m avaction_train.NAME`; see
models/train/README.md):
  train          the trainer, one --arch per model (cavnet-small, mov, cavnet, avt)
  basic          training / export of the basic task's closed-set classifier (cavnet-small)
  compositional  training / evaluation / export of the compositional task's models (mov, cavnet, avt)
  data           dump loading, normalisation, augmentation
  common         seeding, optimiser, confusion matrices, ONNX checks, JSON helpers
  blocks, cavnet, fusion_models, diccae   the models and the DICCAE loss (PyTorch)
  preprocess     reference image transform of the Rust `Preprocess`
  fake_dump      synthetic stand-in dumps (command line)
  text_embed     all-MiniLM-L6-v2 label embeddings in plain torch (command line)
  export_minilm  all-MiniLM-L6-v2 to ONNX without torch (command line; scripts/setup-minilm.sh)
  install_bundle a training run -> a model bundle (command line)
  bundle_readme  a bundle's README.md from its runs' metrics (command line)
  export         bring your own model: an nn.Module (or encoders + head) -> a manifest-v2 bundle with
                 goldens, checks and `avaction verify` (command line and library; examples/byo_model.py)
  arch_table     real architectures (torchvision video / image models, AST-style audio) through export,
                 measured in onnxruntime and tract (command line)
Nothing here is needed at run time.
"""
