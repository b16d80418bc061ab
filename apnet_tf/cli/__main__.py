"""``python -m apnet_tf.cli``: the same as the ``apnet-tf`` command."""

from apnet_tf.cli.app import main

main()
