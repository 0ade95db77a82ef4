"""rewardflow: make language models reason better with rewards."""

__version__ = "0.1.0"
