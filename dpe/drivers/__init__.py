"""Infrastructure drivers: ``local`` (sshd guests on this host) and ``libvirt``
(VMs); ``registry.make_driver`` picks one by the deployable's infrastructure."""
