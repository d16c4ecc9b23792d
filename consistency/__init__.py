"""Identity of training work: content hashes, derived seeds and (later) the result cache."""

from consistency.hashing import canonical_json, data_hash, deterministic_seed, state_dict_hash

__all__ = ["canonical_json", "data_hash", "deterministic_seed", "state_dict_hash"]
