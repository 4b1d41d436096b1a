"""The eSIM channel: profiles ordered from an SM-DP+ over ES2+ (SGP.22 v2.5), and its callbacks."""
