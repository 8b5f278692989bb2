"""Generation: sampling, cached batched decoding, chat turns."""
