"""f-GAN's variational form of an f-divergence (docs/THEORY.md §3).

    F(V) = E_P[g_f(V)] - E_Q[f*(g_f(V))],   sup_V F = D_f(P || Q)

P is the real distribution, Q the model's. A subclass gives the output
activation g_f and the composition f*(g_f(v)), written in a numerically stable
closed form; everything else is shared.
"""


class Divergence:
    """Interface of every adversarial objective: d_loss and g_loss on raw outputs V, and the
    penalties on D that belong to it (`regularizers`, see regularizers.py).

    paired: the losses compare V on a real and a fake x_{t-1} with the same x_t and t, element
    by element, and g_loss takes V on the real pair too: g_loss(fake_out, real_out).
    with_r2: R2 on fakes comes with R1, at R1's gamma, unless the run sets divergence.r2_gamma.
    """

    name = None
    paired = False
    with_r2 = False

    def __init__(self, n_critic=1):
        if isinstance(n_critic, bool) or not isinstance(n_critic, int) or n_critic < 1:
            raise ValueError(f"n_critic must be an integer >= 1, got {n_critic!r}")
        self.n_critic = n_critic
        self.regularizers = []

    def d_loss(self, real_out, fake_out):
        raise NotImplementedError

    def g_loss(self, fake_out):
        raise NotImplementedError

    def __repr__(self):
        options = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({options})"


class FDivergence(Divergence):
    """Discriminator loss -F; generator loss 'saddle' or 'nonsaturating'."""

    default_generator_loss = "saddle"

    def __init__(self, generator_loss=None, n_critic=1):
        super().__init__(n_critic)
        generator_loss = generator_loss or self.default_generator_loss
        if generator_loss not in ("saddle", "nonsaturating"):
            raise ValueError(
                f"generator_loss must be 'saddle' or 'nonsaturating', got {generator_loss!r}")
        self.generator_loss = generator_loss

    def activation(self, v):
        """g_f(v): maps a raw output into the domain of f*."""
        raise NotImplementedError

    def conjugate_of_activation(self, v):
        """f*(g_f(v))."""
        raise NotImplementedError

    def d_loss(self, real_out, fake_out):
        return -(self.activation(real_out).mean() - self.conjugate_of_activation(fake_out).mean())

    def g_loss(self, fake_out):
        if self.generator_loss == "saddle":  # minimise F
            return -self.conjugate_of_activation(fake_out).mean()
        return -self.activation(fake_out).mean()  # f-GAN's "maximise E_Q[g_f(V)]"
