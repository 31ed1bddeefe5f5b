"""BibTeX of papers cited by more than one loss."""

CITE_DANCE = """@inproceedings{li2021more,
      title={More Robust Dense Retrieval with Contrastive Dual Learning},
      author={Yizhi Li and Zhenghao Liu and Chenyan Xiong and Zhiyuan Liu},
      booktitle={Proceedings of the 2021 ACM SIGIR International Conference on Theory of Information Retrieval},
      year={2021}, eprint={2107.07773}, archivePrefix={arXiv},
}"""
