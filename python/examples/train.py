import eqprop

# MNIST from $EQPROP_DATA_DIR, else downloaded (checksums verified) to the user cache.
train = eqprop.load_dataset("mnist", "train", train_limit=10000)
test = eqprop.load_dataset("mnist", "test")
net = eqprop.Network("best")  # 784-500-10, seed 1: the preset `eqprop train` uses
history = net.fit(train, validation=test)  # a progress bar, a line per epoch
print(f"test error {history[-1]['test_error']}%")
print(net.predict(test.images[:10]), test.labels[:10])
