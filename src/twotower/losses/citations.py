"""BibTeX of the papers the losses cite (``loss.citation``, on the model card), in one place."""

CITE_DANCE = """@inproceedings{li2021more,
      title={More Robust Dense Retrieval with Contrastive Dual Learning},
      author={Yizhi Li and Zhenghao Liu and Chenyan Xiong and Zhiyuan Liu},
      booktitle={Proceedings of the 2021 ACM SIGIR International Conference on Theory of Information Retrieval},
      year={2021}, eprint={2107.07773}, archivePrefix={arXiv},
}"""

CITE_INFONCE = """@misc{oord2019representationlearningcontrastivepredictive,
      title={Representation Learning with Contrastive Predictive Coding},
      author={Aaron van den Oord and Yazhe Li and Oriol Vinyals},
      year={2019}, eprint={1807.03748}, archivePrefix={arXiv}, primaryClass={cs.LG},
      url={https://arxiv.org/abs/1807.03748},
}"""
CITE_SAMTONE = """@inproceedings{moiseev2023samtone,
      title={SamToNe: Improving Contrastive Loss for Dual Encoder Retrieval Models with Same Tower Negatives},
      author={Fedor Moiseev and Gustavo Hernandez Abrego and Peter Dornbach and Imed Zitouni and Enrique Alfonseca and Zhe Dong},
      booktitle={Findings of the Association for Computational Linguistics: ACL 2023},
      year={2023}, eprint={2306.02516}, archivePrefix={arXiv},
}"""
CITE_GTE = """@misc{li2023generaltextembeddingsmultistage,
      title={Towards General Text Embeddings with Multi-stage Contrastive Learning},
      author={Zehan Li and Xin Zhang and Yanzhao Zhang and Dingkun Long and Pengjun Xie and Meishan Zhang},
      year={2023}, eprint={2308.03281}, archivePrefix={arXiv}, primaryClass={cs.CL},
      url={https://arxiv.org/abs/2308.03281},
}"""

CITE_MARGIN_MSE = """@misc{hofstätter2021improving,
    title={Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation},
    author={Sebastian Hofstätter and Sophia Althammer and Michael Schröder and Mete Sertkan and Allan Hanbury},
    year={2021}, eprint={2010.02666}, archivePrefix={arXiv}, primaryClass={cs.IR}
}"""

CITE_LISTWISE = """@misc{tamber2025conventionalcontrastivelearningfalls,
      title={Conventional Contrastive Learning Often Falls Short: Improving Dense Retrieval with Cross-Encoder Listwise Distillation and Synthetic Data},
      author={Manveer Singh Tamber and Suleman Kazi and Vivek Sourabh and Jimmy Lin},
      year={2025}, archivePrefix={arXiv}, primaryClass={cs.IR},
}"""

CITE_GRADCACHE = """@inproceedings{gao2021scaling,
  title={Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup},
  author={Gao, Luyu and Zhang, Yunyi and Han, Jiawei and Callan, Jamie},
  booktitle={Proceedings of the 6th Workshop on Representation Learning for NLP},
  year={2021}
}"""
