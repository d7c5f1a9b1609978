"""Neural building blocks of the sequence experts (``ml.experts``): lazy per-batch
sequence windows with per-window normalisation, the xLSTM and LSTM networks, the focal
loss and the training loop. Nothing here knows about roles or saving; ``ml.experts``
wires them into ``Classifier`` implementations."""
