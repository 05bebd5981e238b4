"""Member clusters: credentials, connections and what the hub does in each member."""
