"""The networks a suite samples from: recipes, training, the published models and the cache, external models, the guidance classifier."""
