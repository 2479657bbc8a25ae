"""The Label Studio round trip: a local server, pushing pre-labelled tasks, pulling human labels.

``server`` starts Label Studio on 127.0.0.1 with its own data folder and API token;
``push`` sends de-identified images with the pre-label model's predictions, most
informative first; ``pull`` turns the annotators' work back into a nodules table.
Only de-identified pixels and pseudonymous ids ever reach Label Studio.
"""
