"""Options chains: contract identity, pricing inputs, implied volatility and greeks, rules."""
