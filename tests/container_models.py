"""Users' own container layers and subclassed models, keras.io style, shared by the tests (imported as
`tests.container_models` everywhere, so that each class is registered with Keras once)."""

import keras

L = keras.layers


@keras.saving.register_keras_serializable("tfprune_tests")
class ResidualBlock(L.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = L.Dense(units, activation="relu")
        self.norm = L.LayerNormalization()

    def call(self, x):
        return self.norm(x + self.dense(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable("tfprune_tests")
class BlockNet(keras.Model):
    """A subclassed model holding container layers, one of them in a list."""

    def __init__(self, units=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.first = ResidualBlock(units)
        self.stack = [ResidualBlock(units), ResidualBlock(units)]
        self.head = L.Dense(3)

    def call(self, x):
        x = self.first(x)
        for block in self.stack:
            x = block(x)
        return self.head(x)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable("tfprune_tests")
class TransformerBlock(L.Layer):
    """keras.io's text-classification Transformer block, small."""

    def __init__(self, embed_dim, num_heads, ff_dim, **kwargs):
        super().__init__(**kwargs)
        self.sizes = dict(embed_dim=embed_dim, num_heads=num_heads, ff_dim=ff_dim)
        self.att = L.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential([L.Dense(ff_dim, activation="relu"), L.Dense(embed_dim)])
        self.layernorm1 = L.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = L.LayerNormalization(epsilon=1e-6)
        self.dropout = L.Dropout(0.1)

    def call(self, inputs):
        out1 = self.layernorm1(inputs + self.dropout(self.att(inputs, inputs)))
        return self.layernorm2(out1 + self.ffn(out1))

    def get_config(self):
        return {**super().get_config(), **self.sizes}


@keras.saving.register_keras_serializable("tfprune_tests")
class TokenAndPositionEmbedding(L.Layer):
    def __init__(self, maxlen, vocab_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.sizes = dict(maxlen=maxlen, vocab_size=vocab_size, embed_dim=embed_dim)
        self.token_emb = L.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = L.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        positions = keras.ops.arange(0, keras.ops.shape(x)[-1])
        return self.token_emb(x) + self.pos_emb(positions)

    def get_config(self):
        return {**super().get_config(), **self.sizes}


def transformer_classifier(maxlen=10, vocab=50):
    keras.utils.set_random_seed(0)
    tokens = keras.Input((maxlen,), dtype="int32")
    x = TokenAndPositionEmbedding(maxlen, vocab, 8)(tokens)
    x = TransformerBlock(8, 2, 16)(x)
    x = L.GlobalAveragePooling1D()(x)
    x = L.Lambda(lambda t: 2.0 * t)(x)
    return keras.Model(tokens, L.Dense(2)(x))
