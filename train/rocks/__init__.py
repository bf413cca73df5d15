"""Rock classification and its similarity embedding (Geological Image Similarity)."""
from .loop import RocksTrainConfig, train_rocks

TRAINER = (RocksTrainConfig, train_rocks)
